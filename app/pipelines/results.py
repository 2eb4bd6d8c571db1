"""A pipeline's result: how it reports one, and the check that turns it into stored JSON.

A coroutine or plain function returns its result; any pipeline may call
`ctx.set_result(value)`, and an async generator may also `yield Result(value)`. The last one
set before the pipeline ends wins (a return value other than None counts as set last).

The worker encodes the value once, here, before the final write: that write is one statement
for many jobs, so a value PostgreSQL would refuse must never reach it, or its neighbours'
finishes would fail with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from app.pipelines.errors import PermanentError

# A JSON escape of NUL, not an escaped backslash followed by `u0000`: jsonb cannot hold NUL.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_JSON_TYPES = "dict, list, str, int, float, bool or None"


@dataclass(frozen=True)
class Result:
    """Yielded by an async generator: sets the job's result (a checkpoint like any yield)."""

    value: Any


class ResultError(PermanentError):
    """The pipeline's result cannot be stored; the job fails without a retry."""


class ResultNotJsonError(ResultError):
    """The pipeline's result is not JSON-serialisable."""


class ResultTooLargeError(ResultError):
    """The pipeline's result is larger than DL_RESULT_MAX_BYTES allows."""


def _refuse(value: Any) -> Any:
    """msgspec's hook for a type it cannot encode: name that type."""
    kind = type(value)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    raise ResultNotJsonError(
        f"the result is not JSON-serialisable: it holds a value of type {name!r} "
        f"(use {_JSON_TYPES}; dataclasses, msgspec Structs, datetime, UUID and Decimal "
        "are converted)"
    )


def encode_result(value: Any, max_bytes: int) -> str | None:
    """The result as compact JSON text, or None for no result (None).

    Raises ResultNotJsonError naming the type that cannot be encoded (or the NUL character
    jsonb cannot hold), ResultTooLargeError naming DL_RESULT_MAX_BYTES and its value.
    """
    if value is None:
        return None
    try:
        data = msgspec.json.encode(value, enc_hook=_refuse)
    except ResultNotJsonError:
        raise
    except RecursionError:
        raise ResultNotJsonError("the result is not JSON-serialisable: nested too deeply") from None
    except UnicodeEncodeError:
        raise ResultNotJsonError(
            "the result is not JSON-serialisable: a string holds a lone surrogate (not UTF-8)"
        ) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ResultNotJsonError(f"the result is not JSON-serialisable: {exc}") from None
    if len(data) > max_bytes:
        raise ResultTooLargeError(
            f"the result is {len(data):,} bytes of JSON, more than DL_RESULT_MAX_BYTES "
            f"({max_bytes:,} bytes) allows"
        )
    if b"\\u0000" in data and _NUL_ESCAPE.search(data):
        raise ResultNotJsonError(
            "the result is not storable: a string holds a NUL character (\\u0000), "
            "which PostgreSQL's jsonb cannot hold"
        )
    return data.decode()
