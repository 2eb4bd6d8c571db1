"""Security headers on every answer: the dashboard's, the API's and the schema pages'.

One `before_send` hook sets them, so errors and 404s get them too. A header a handler set
itself (the dashboard's `Cache-Control: no-cache`, a stream's) is kept.

- Everything: `nosniff`, `Referrer-Policy: no-referrer`, framing refused (`X-Frame-Options:
  DENY` and CSP `frame-ancestors 'none'`): the dashboard keeps its token in localStorage,
  so no other site may frame it and click for the user.
- The dashboard: scripts, styles and requests from this origin only (`default-src 'self'`),
  no inline code; `data:` images for its empty favicon.
- The API: JSON loads nothing (`default-src 'none'`), and `Cache-Control: no-store`: answers
  carry job data that no shared cache should keep.
- The schema pages (`/schema`, `/schema/swagger`, `/schema/redoc`): Litestar renders them
  with inline scripts that load Swagger UI and ReDoc from their CDNs; their CSP allows those
  CDNs and nothing else (docs/security.md#http-edge).
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from app.http.dashboard.controller import DASHBOARD_PATH

_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
DASHBOARD_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The CDNs of Litestar's Swagger UI and ReDoc pages (litestar.openapi.plugins).
_SCHEMA_CDNS = "https://cdn.jsdelivr.net https://cdn.redoc.ly"
SCHEMA_UI_CSP = (
    f"default-src 'self'; script-src 'self' 'unsafe-inline' {_SCHEMA_CDNS};"
    f" style-src 'self' 'unsafe-inline' {_SCHEMA_CDNS} https://fonts.googleapis.com;"
    " font-src 'self' data: https://fonts.gstatic.com; img-src 'self' data: https:;"
    " worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none';"
    " frame-ancestors 'none'"
)
SCHEMA_PATH = "/schema"
# The schema as data, not a page: the API's headers.
_SCHEMA_DOCUMENTS = (".json", ".yaml", ".yml")


def _is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def headers_for(path: str) -> dict[str, str]:
    """The security headers an answer to `path` gets."""
    if _is_under(path, DASHBOARD_PATH):
        return {**_COMMON, "Content-Security-Policy": DASHBOARD_CSP}
    if _is_under(path, SCHEMA_PATH) and not path.endswith(_SCHEMA_DOCUMENTS):
        return {**_COMMON, "Content-Security-Policy": SCHEMA_UI_CSP}
    return {**_COMMON, "Content-Security-Policy": API_CSP, "Cache-Control": "no-store"}


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


# Encoded once: this runs on every answer.
_API_HEADERS = _encoded(headers_for("/"))


async def add_security_headers(message: Message, scope: Scope) -> None:
    """Litestar `before_send` hook: the headers of `headers_for` on each answer's start."""
    if message["type"] != "http.response.start":
        return
    path = scope.get("path", "")
    headers = message.get("headers")
    if isinstance(headers, list) and not path.startswith((DASHBOARD_PATH, SCHEMA_PATH)):
        # The API's answers, nearly all of them: a list of pairs, extended in place.
        present = {name.lower() for name, _ in headers}
        headers.extend(item for item in _API_HEADERS if item[0] not in present)
        return
    mutable = MutableScopeHeaders.from_message(message)
    for name, value in headers_for(path).items():
        if name not in mutable:
            mutable[name] = value
