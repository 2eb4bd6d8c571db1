"""What makes two job requests "the same" for an idempotency_key, and the service's own names.

A key reused with the same request finds the first job; with a different request it is a
conflict (IdempotencyConflictError), never the first job passed off as the answer. The
request is compared by a fingerprint stored with the job (dl_jobs.request_fingerprint).

Names the service writes itself (a schedule's fire-time key and producer) start with
RESERVED_PREFIX, which client input may not use: a client can neither pre-empt a schedule's
job by guessing its key nor pass its jobs off as a schedule's.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from typing import Any

import msgspec

from app.domain.errors import InvalidJobError
from app.domain.spec import JobCreate

RESERVED_PREFIX = "dl:"
# The fields the prefix is reserved in: the service fills them for schedules.
RESERVED_FIELDS = ("idempotency_key", "producer")


def is_reserved(value: str | None) -> bool:
    """Whether `value` is in the service's namespace (in any case, after leading blanks)."""
    return value is not None and value.lstrip().lower().startswith(RESERVED_PREFIX)


def check_client_names(spec: JobCreate) -> None:
    """Refuse a client's spec that writes into the service's namespace (a 400 naming it)."""
    for name in RESERVED_FIELDS:
        if is_reserved(getattr(spec, name)):
            raise InvalidJobError(
                f"values starting with {RESERVED_PREFIX!r} are reserved for the service's own "
                f"jobs (field `{name}`)"
            )


def request_fingerprint(spec: JobCreate, lease_ttl_sec: int) -> str:
    """A digest of the job `spec` asks for, after defaults; equal for the same request.

    Every field but idempotency_key, as the job is created: the spec's defaults applied and
    `lease_ttl_sec` the one the job gets (the server's default when omitted). `args` compare
    as JSON values (key order does not matter; 1 and 1.0 differ, as the pipeline sees them).
    `available_at` compares as an instant; when omitted the server fills in "now", which is
    no part of the request, so an omitted one matches only another omitted one.
    """
    available_at = spec.available_at
    request: dict[str, Any] = {
        "queue": spec.queue,
        "task": spec.task,
        "args": spec.args,
        "lock_key": spec.lock_key,
        "partition_key": spec.partition_key,
        "priority": spec.priority,
        "available_at": None if available_at is None else available_at.astimezone(UTC),
        "max_attempts": spec.max_attempts,
        "lease_ttl_sec": lease_ttl_sec,
        "producer": spec.producer,
        "consumer_group": spec.consumer_group,
    }
    canonical = msgspec.json.encode(request, order="sorted")
    return hashlib.sha256(canonical).hexdigest()
