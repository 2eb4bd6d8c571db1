"""What makes two job requests "the same" for an idempotency_key, and the service's own names.

A key reused with the same request finds the first job; with a different request it is a
conflict (IdempotencyConflictError), never the first job passed off as the answer. The
request is compared by a fingerprint stored with the job (dl_jobs.request_fingerprint),
computed in the database by dl_request_fingerprint() (app.db.enqueue_function) for the
Python insert and for the SQL function dl_enqueue() alike: one definition of "the same
request" whichever way a job is created.

Names the service writes itself (a schedule's fire-time key and producer) start with
RESERVED_PREFIX, which client input may not use: a client can neither pre-empt a schedule's
job by guessing its key nor pass its jobs off as a schedule's.
"""

from __future__ import annotations

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
