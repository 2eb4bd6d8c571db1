"""How the embedded PostgreSQL authenticates: a generated password and a SCRAM-only pg_hba.conf.

Trust authentication would make every local user of the machine a superuser of the server,
so the server takes only SCRAM passwords over TCP. The password is made here, at initdb,
and kept in the data folder in a file only its owner can read; whoever may read the data
folder may read the data anyway.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

# In the data folder itself: it goes with the cluster (`make clean-data` removes both) and
# PostgreSQL ignores files it does not know.
PASSWORD_FILE_NAME = "dataloader-password"  # noqa: S105 (a file name, not a password)
AUTH_METHOD = "scram-sha-256"
LOOPBACK_NETWORK = "127.0.0.1/32"
# 32 random bytes: 256 bits, URL-safe characters only, so the password needs no quoting in
# a DSN, a shell or an SQL literal.
_PASSWORD_BYTES = 32


def password_path(data_dir: Path) -> Path:
    """Where the superuser's password of the cluster in `data_dir` is kept."""
    return data_dir / PASSWORD_FILE_NAME


def new_password() -> str:
    """A fresh strong password."""
    return secrets.token_urlsafe(_PASSWORD_BYTES)


def write_password_file(path: Path, password: str) -> None:
    """Create `path` holding `password`, readable by its owner only from the first byte on.

    The mode is given to open(2) rather than set afterwards, so the file is never readable
    by others, not even for a moment; an existing file (or a symlink) is an error, never
    overwritten or followed.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")  # initdb --pwfile reads the first line


def read_password(path: Path) -> str:
    """The password kept in `path`."""
    password = path.read_text().strip()
    if not password:
        raise ValueError(f"{path} holds no password")
    return password


def hba_conf(client_networks: Sequence[str] = ()) -> str:
    """pg_hba.conf: SCRAM over TCP from loopback (and `client_networks`), nothing else.

    No `local` line (the server has no Unix socket) and no trust anywhere.
    """
    lines = [
        "# Written by app/devserver/embedded_auth.py at every start; edits are replaced.",
        f"host all all {LOOPBACK_NETWORK} {AUTH_METHOD}",
        *(f"host all all {network} {AUTH_METHOD}" for network in client_networks),
    ]
    return "\n".join(lines) + "\n"


def write_hba_conf(data_dir: Path, client_networks: Sequence[str] = ()) -> None:
    """Replace the cluster's pg_hba.conf with `hba_conf(client_networks)`, atomically."""
    target = data_dir / "pg_hba.conf"
    pending = data_dir / "pg_hba.conf.new"
    pending.unlink(missing_ok=True)
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(hba_conf(client_networks))
    os.replace(pending, target)
