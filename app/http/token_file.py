"""API_TOKENS_FILE: the token list in a file, re-read when it changes or on SIGHUP.

Rotation without a restart: every API process looks at the file's identity (device, inode,
size, modification time) at most once per API_TOKENS_FILE_CHECK_SEC, on a request, and reads
it again when that changed; SIGHUP reads it at once. Each process of `serve --workers N`
does this on its own, so no process needs a message from another. A file that cannot be
read or is invalid keeps the tokens read before (one error line per bad version): a broken
edit never opens the API nor locks everyone out.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from app.settings import ApiToken

logger = logging.getLogger("app.http.auth")
_TOKEN_LIST = TypeAdapter(list[ApiToken])
# What identifies one version of the file without reading it.
_Signature = tuple[int, int, int, int]


class TokenFileError(Exception):
    """API_TOKENS_FILE cannot be read, is not JSON, or holds no valid token list."""


def read_token_file(path: Path) -> list[ApiToken]:
    """The tokens in the file; TokenFileError saying why not (never quoting a secret)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TokenFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        tokens = _TOKEN_LIST.validate_python(json.loads(raw))
    except json.JSONDecodeError as exc:  # its message gives the position, not the text
        raise TokenFileError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    except (UnicodeDecodeError, RecursionError):
        raise TokenFileError(f"{path} is not UTF-8 JSON") from None
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the list"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise TokenFileError(f"{path}: {where}: {message}") from None
    if not tokens:
        # An empty list would open the API: a file is configured, so tokens are meant.
        raise TokenFileError(f"{path} lists no token")
    names = [token.name for token in tokens]
    if len(names) != len(set(names)):
        raise TokenFileError(f"{path} names a token twice")
    return tokens


def _signature(path: Path) -> _Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class TokenFile:
    """One process's view of API_TOKENS_FILE: the last good token list and when to look again."""

    def __init__(self, path: Path, check_interval_sec: float) -> None:
        self.path = path
        self.check_interval_sec = check_interval_sec
        self._seen = _signature(path)
        self.tokens = read_token_file(path)  # start-up: an invalid file is a TokenFileError
        self._next_check = time.monotonic() + check_interval_sec
        self._reported: _Signature | None = None

    def poll(self) -> list[ApiToken] | None:
        """New tokens when the file changed since the last look (at most one look per interval)."""
        if self.check_interval_sec <= 0:
            return None
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.check_interval_sec
        signature = _signature(self.path)
        if signature == self._seen:
            return None
        return self._read(signature)

    def reload(self) -> list[ApiToken] | None:
        """Read the file now, changed or not (SIGHUP); None when it is invalid."""
        return self._read(_signature(self.path), forced=True)

    def _read(self, signature: _Signature | None, *, forced: bool = False) -> list[ApiToken] | None:
        self._seen = signature
        try:
            tokens = read_token_file(self.path)
        except TokenFileError as exc:
            if forced or signature != self._reported:  # one line per bad version, not per look
                self._reported = signature
                logger.error(
                    "API_TOKENS_FILE not reloaded, keeping the %d token(s) read before: %s",
                    len(self.tokens),
                    exc,
                )
            return None
        self._reported = None
        self.tokens = tokens
        logger.info(
            "API tokens reloaded from %s: %s",
            self.path,
            ", ".join(token.name for token in tokens),
        )
        return tokens
