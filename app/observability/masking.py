"""Masking of secrets in whatever gets logged: keys that name a secret lose their value.

A key is secret when its name, lower-cased with `-` read as `_`, contains one of the
sensitive words (`password`, `secret`, `token`, `key`, ...) or one of DL_LOG_MASK_KEYS.
Our own well-known fields that merely end in `key` and carry no secret (`lock_key`,
`idempotency_key`, `partition_key`, `routing_key`) are exempt: logs without them would
be much less useful, and they never hold credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

MASK = "***"

SENSITIVE_WORDS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "authorization",
    "cookie",
)
# Exact (normalized) key names that contain a sensitive word but are not secrets.
NOT_SECRET: frozenset[str] = frozenset(
    {"lock_key", "idempotency_key", "partition_key", "routing_key"}
)
# `scheme://user:password@host`: the password part of a URL.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@]*:)[^\s/@]+@")
_MAX_DEPTH = 20


class Masker:
    """Masks the values of secret-looking keys, recursively, and passwords inside URLs."""

    def __init__(self, extra_words: Iterable[str] = ()) -> None:
        words = {*SENSITIVE_WORDS, *(_normalize(w) for w in extra_words if w.strip())}
        self.words = tuple(sorted(words))

    def is_secret(self, key: str) -> bool:
        """Whether a value logged under `key` must be hidden."""
        name = _normalize(key)
        if name in NOT_SECRET:
            return False
        return any(word in name for word in self.words)

    def mask(self, value: Any, _depth: int = 0) -> Any:
        """A copy of `value` with every secret key's value replaced by `***`."""
        if _depth > _MAX_DEPTH:
            return value
        if isinstance(value, Mapping):
            return {
                k: MASK if isinstance(k, str) and self.is_secret(k) else self.mask(v, _depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            items = [self._mask_item(item, _depth + 1) for item in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, str):
            return mask_url_passwords(value)
        return value

    def _mask_item(self, item: Any, depth: int) -> Any:
        # Header lists: [("Authorization", "Bearer ..."), ...]
        if (
            isinstance(item, tuple | list)
            and len(item) == 2
            and isinstance(item[0], str)
            and self.is_secret(item[0])
        ):
            return (item[0], MASK) if isinstance(item, tuple) else [item[0], MASK]
        return self.mask(item, depth)

    def mask_query(self, path: str) -> str:
        """A path whose query parameters with secret names have their values masked."""
        base, sep, query = path.partition("?")
        if not sep or not query:
            return path
        pairs = parse_qsl(query, keep_blank_values=True)
        if not any(self.is_secret(name) for name, _ in pairs):
            return path
        masked = [(name, MASK if self.is_secret(name) else value) for name, value in pairs]
        return f"{base}?{urlencode(masked, safe='*')}"


def mask_url_passwords(text: str) -> str:
    """`postgresql://user:hunter2@db/x` -> `postgresql://user:***@db/x`, anywhere in `text`."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)


def _normalize(key: str) -> str:
    return key.strip().lower().replace("-", "_")
