"""Caps on open job streams: per process and per API token.

A stream holds a connection and a subscription for as long as the job runs; without a cap
one token could open thousands. Each stream takes a slot before its answer starts and gives
it back when the stream ends however it ends: a final status, the client leaving, or the
answer never being iterated at all (the slot is also released when its stream is collected).
"""

from __future__ import annotations

import weakref
from collections import Counter

from litestar.exceptions import TooManyRequestsException


class StreamSlot:
    """One open stream's place; `release()` is idempotent."""

    def __init__(self, slots: StreamSlots, client: str | None) -> None:
        self._slots = slots
        self._client = client
        self._held = True

    def release(self) -> None:
        """Give the place back (once)."""
        if self._held:
            self._held = False
            self._slots._release(self._client)

    def release_with(self, owner: object) -> None:
        """Also give the place back when `owner` (the stream) is garbage-collected."""
        weakref.finalize(owner, self.release)


class StreamSlots:
    """Counts the open streams of this process, in total and by token name."""

    def __init__(self, max_total: int, max_per_client: int, retry_after_sec: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.retry_after_sec = retry_after_sec
        self.total = 0
        self._by_client: Counter[str] = Counter()

    def open(self, client: str | None) -> StreamSlot:
        """A slot for a new stream of `client` (a token name; None: the API is open).

        429 with Retry-After when this process or this token has its maximum open.
        """
        if self.total >= self.max_total:
            self._refuse(f"too many job streams open on this server (at most {self.max_total})")
        if client is not None and self._by_client[client] >= self.max_per_client:
            self._refuse(
                f"token {client!r} has too many job streams open (at most {self.max_per_client})"
            )
        self.total += 1
        if client is not None:
            self._by_client[client] += 1
        return StreamSlot(self, client)

    def held_by(self, client: str) -> int:
        """Open streams of one token."""
        return self._by_client[client]

    def _release(self, client: str | None) -> None:
        self.total -= 1
        if client is not None:
            self._by_client[client] -= 1
            if self._by_client[client] <= 0:
                del self._by_client[client]

    def _refuse(self, detail: str) -> None:
        raise TooManyRequestsException(
            detail=detail, headers={"Retry-After": str(self.retry_after_sec)}
        )
