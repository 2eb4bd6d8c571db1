"""Bodies must be declared as JSON: the check the handlers taking a body call, and its 415."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

from app.http.errors import error_response

NOT_JSON = error_response(
    415,
    "The body is not declared as JSON",
    "Content-Type must be application/json, not 'text/plain'",
)


def require_json(request: Request[Any, Any, Any]) -> None:
    """415 unless the body is declared as JSON."""
    media_type = request.content_type[0]
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Type must be application/json, not {media_type or 'missing'!r}",
        )
