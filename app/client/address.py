"""Where the CLI finds the API when no --url or DATALOADER_URL says: APP_HOST and APP_PORT.

The server and the client then read the same two settings, so `APP_PORT=9000 make run` and a
`dataloader` in that shell agree without a third variable. Precedence, highest first:
`--url`, `DATALOADER_URL`, `APP_HOST`/`APP_PORT`, `http://127.0.0.1:8081`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
# Listening on every address means a client on this machine reaches it through loopback.
_WILDCARDS = {
    "": DEFAULT_HOST,
    "0.0.0.0": DEFAULT_HOST,  # noqa: S104 - an address to recognise, not to bind
    "::": "::1",
    "[::]": "::1",
}


class AddressError(ValueError):
    """APP_HOST or APP_PORT cannot make a URL."""


def url_from_app_settings(environ: Mapping[str, str]) -> str:
    """`http://APP_HOST:APP_PORT`, each defaulting as the server's own settings do."""
    host = environ.get("APP_HOST", DEFAULT_HOST).strip()
    host = _WILDCARDS.get(host, host).strip("[]")
    port_text = environ.get("APP_PORT", str(DEFAULT_PORT)).strip()
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise AddressError(f"APP_PORT={port_text!r} is not a port number (1-65535)")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    shown = f"[{host}]" if literal is not None and literal.version == 6 else host
    return f"http://{shown}:{int(port_text)}"
