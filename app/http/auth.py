"""Bearer-token access control: each route declares the scope it needs, a guard checks it.

Scopes nest: `admin` implies `write`, `write` implies `read`. A handler declares its scope
with `opt=requires(...)`; a handler that declares none needs `admin`, so a new endpoint is
closed until someone decides otherwise. `OPEN` routes (health, readiness, the schema, the
dashboard's page and files) need no token. With no tokens configured every route is open;
`python -m app serve` allows that only on a loopback address (see app.cli). Tokens come
from API_TOKENS_JSON (fixed for the process's life) or API_TOKENS_FILE (re-read when it
changes, see app.http.token_file).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

from app.http.token_file import TokenFile
from app.settings import ApiToken, Settings

RouteScope = Literal["open", "read", "write", "admin"]
SCOPE_KEY = "scope"
DEFAULT_SCOPE: RouteScope = "admin"
# What holding a scope grants: admin ⊃ write ⊃ read.
_GRANTS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}
SECURITY_SCHEME_NAME = "BearerToken"
BEARER_SECURITY: list[SecurityRequirement] = [{SECURITY_SCHEME_NAME: []}]
OPEN_API_MESSAGE = "API is open: no API_TOKENS_JSON, bound to loopback only"


# Where the guard leaves the name of the token a request was let in with.
API_CLIENT_STATE = "api_client"


def api_client(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The name of the token this request was let in with; None when the API is open."""
    name = connection.state.get(API_CLIENT_STATE)
    return name if isinstance(name, str) else None


def requires(scope: RouteScope) -> dict[str, Any]:
    """The handler `opt` declaring which scope a route needs (`open`: none)."""
    return {SCOPE_KEY: scope}


def route_scope(handler: BaseRouteHandler) -> RouteScope:
    """The scope a handler declared, or the strictest when it declared none."""
    if getattr(handler, "http_methods", None) == {"OPTIONS"}:
        return "open"  # Litestar's automatic OPTIONS answer: the allowed methods, no data
    scope = handler.opt.get(SCOPE_KEY)
    return scope if scope in ("open", "read", "write", "admin") else DEFAULT_SCOPE


def openapi_components() -> Components:
    """The bearer scheme for the OpenAPI document."""
    return Components(
        security_schemes={
            SECURITY_SCHEME_NAME: SecurityScheme(
                type="http",
                scheme="bearer",
                description="An API token from API_TOKENS_JSON or API_TOKENS_FILE: "
                "`Authorization: Bearer <token>`.",
            )
        }
    )


def _digest(secret: str) -> bytes:
    # Equal-length digests keep compare_digest's time independent of the token's length.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def _compiled(tokens: Sequence[ApiToken]) -> list[tuple[str, bytes, set[str]]]:
    return [(t.name, _digest(t.token.get_secret_value()), set(t.scopes)) for t in tokens]


class TokenGuard:
    """Checks `Authorization: Bearer <token>` against every configured token."""

    def __init__(self, tokens: Sequence[ApiToken], source: TokenFile | None = None) -> None:
        self._source = source
        self._tokens = _compiled(source.tokens if source is not None else tokens)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenGuard:
        """API_TOKENS_FILE when set (TokenFileError if it is invalid), else API_TOKENS_JSON."""
        if settings.api_tokens_file:
            source = TokenFile(Path(settings.api_tokens_file), settings.api_tokens_file_check_sec)
            return cls((), source)
        return cls(settings.api_tokens_json)

    @property
    def enabled(self) -> bool:
        """Whether tokens are required (else the API is open); a token file always requires them."""
        return bool(self._tokens) or self._source is not None

    @property
    def reloadable(self) -> bool:
        """Whether the tokens come from a file that SIGHUP re-reads."""
        return self._source is not None

    def reload(self) -> None:
        """Re-read the token file now (the SIGHUP handler); an invalid file changes nothing."""
        if self._source is not None and (tokens := self._source.reload()) is not None:
            self._tokens = _compiled(tokens)

    def refresh(self) -> None:
        """Pick up a changed token file (a stat at most once per check interval)."""
        if self._source is not None and (tokens := self._source.poll()) is not None:
            self._tokens = _compiled(tokens)

    def identify(self, presented: str) -> tuple[str, frozenset[str]] | None:
        """The matching token's name and granted scopes; every token is compared."""
        digest = _digest(presented)
        found: tuple[str, frozenset[str]] | None = None
        for name, expected, scopes in self._tokens:
            # No early exit: the time taken does not depend on which token matched.
            if hmac.compare_digest(digest, expected) and found is None:
                granted: set[str] = set()
                for scope in scopes:
                    granted |= _GRANTS[scope]
                found = (name, frozenset(granted))
        return found

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        """Litestar guard: 401 without a valid token, 403 without the route's scope."""
        needed = route_scope(handler)
        if needed == "open" or not self.enabled:
            return
        self.refresh()
        header = connection.headers.get("authorization", "")
        kind, _, presented = header.partition(" ")
        match = self.identify(presented.strip()) if kind.lower() == "bearer" else None
        if match is None:
            reason = "a valid API token is required" if header else "an API token is required"
            raise NotAuthorizedException(
                detail=f"{reason} (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="dataloader"'},
            )
        name, granted = match
        structlog.contextvars.bind_contextvars(api_client=name)  # "token" keys are masked in logs
        connection.state[API_CLIENT_STATE] = name
        if needed not in granted:
            raise PermissionDeniedException(
                detail=f"token {name!r} lacks the {needed!r} scope this request needs"
            )
