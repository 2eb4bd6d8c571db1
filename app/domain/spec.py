"""What a caller asks for when it creates a job, validated the same way over HTTP and in-app."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from app.domain.dependencies import MAX_DEPENDS_ON, RunAfter
from app.domain.errors import InvalidJobError

# Names that travel into pgqueuer entrypoints, logs and metrics labels.
NAME_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
# Free text must hold one visible character and no NUL (PostgreSQL text rejects NUL).
_TEXT = r"^[^\x00]*[^\s\x00][^\x00]*$"

QueueName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=100, pattern=NAME_PATTERN, examples=["etl.default"]),
]
TaskName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=NAME_PATTERN, examples=["noop"])
]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=_TEXT)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_TEXT)]
Priority = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="lower runs first")]
MaxAttempts = Annotated[int, msgspec.Meta(ge=1, le=100)]
LeaseTtlSec = Annotated[int, msgspec.Meta(ge=1, le=86_400)]
# The most jobs of one concurrency group that may run at once (dl_jobs' check, migration
# 0013, says the same): each is an advisory-lock slot a start may try.
MAX_CONCURRENCY_LIMIT = 1000
ConcurrencyLimit = Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY_LIMIT)]

DEFAULT_PRIORITY = 100
DEFAULT_MAX_ATTEMPTS = 5
MAX_ARGS_DEPTH = 32
# Outside these bounds a timestamp is a mistake, and PostgreSQL or asyncpg would mangle it.
EARLIEST_AVAILABLE_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_AVAILABLE_AT = datetime(2200, 1, 1, tzinfo=UTC)


class JobCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A job to create: where it runs, what it runs, and how it may run."""

    queue: QueueName
    task: TaskName
    lock_key: Key
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    idempotency_key: Key | None = None
    # At most concurrency_limit jobs of this key run at once (docs/flow-control.md).
    concurrency_key: Key | None = None
    concurrency_limit: ConcurrencyLimit | None = None
    # Counted by the queue's per-rate_key limit, if it has one (docs/flow-control.md).
    rate_key: Key | None = None
    # Join the job already queued for this queue, task and lock_key (one created by a
    # coalescing trigger) instead of adding another (docs/flow-control.md).
    coalescing: bool = False
    partition_key: Label | None = None
    priority: Priority = DEFAULT_PRIORITY
    available_at: datetime | None = None
    max_attempts: MaxAttempts = DEFAULT_MAX_ATTEMPTS
    lease_ttl_sec: LeaseTtlSec | None = None
    producer: Label | None = None
    consumer_group: Label | None = None
    # Jobs that must end first (docs/workflows.md): this one waits, with no dispatch, until
    # each succeeded (run_after `any`: until each ended), and is canceled, naming the parent,
    # when one it needs ended failed, canceled or lost.
    depends_on: Annotated[list[uuid.UUID], msgspec.Meta(max_length=MAX_DEPENDS_ON)] | None = None
    run_after: RunAfter = RunAfter.SUCCEEDED


def _check_json_value(value: object, path: str, depth: int) -> None:
    """Reject what PostgreSQL's jsonb refuses (NUL characters) and absurd nesting."""
    if depth > MAX_ARGS_DEPTH:
        raise InvalidJobError(f"args nests deeper than {MAX_ARGS_DEPTH} levels at `{path}`")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidJobError(f"args holds a NUL character at `{path}`")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise InvalidJobError(f"args holds a NUL character in a key at `{path}`")
            _check_json_value(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{path}[{index}]", depth + 1)


def validated(spec: JobCreate) -> JobCreate:
    """The spec re-checked against its constraints (in-app callers build it by hand)."""
    try:
        checked = msgspec.convert(msgspec.to_builtins(spec), JobCreate)
    except msgspec.ValidationError as exc:
        raise InvalidJobError(str(exc)) from None
    _check_json_value(checked.args, "$.args", 1)
    _check_concurrency_group(checked)
    _check_dependencies(checked)
    if checked.available_at is not None and checked.available_at.tzinfo is None:
        # A timestamp without a zone is read as UTC, the server's reference.
        checked.available_at = checked.available_at.replace(tzinfo=UTC)
    if checked.available_at is not None and not (
        EARLIEST_AVAILABLE_AT <= checked.available_at < LATEST_AVAILABLE_AT
    ):
        raise InvalidJobError(
            f"available_at must be between {EARLIEST_AVAILABLE_AT:%Y-%m-%d} and "
            f"{LATEST_AVAILABLE_AT:%Y-%m-%d} (field `available_at`)"
        )
    return checked


def _check_concurrency_group(spec: JobCreate) -> None:
    """A group needs both its key and its limit: one without the other means nothing."""
    if spec.concurrency_key is not None and spec.concurrency_limit is None:
        raise InvalidJobError(
            "concurrency_limit is required with concurrency_key (field `concurrency_limit`)"
        )
    if spec.concurrency_limit is not None and spec.concurrency_key is None:
        raise InvalidJobError(
            "concurrency_key is required with concurrency_limit (field `concurrency_key`)"
        )


def _check_dependencies(spec: JobCreate) -> None:
    """depends_on names each parent once; a dependent neither coalesces nor sets run_after
    alone. An empty list means no parents."""
    if spec.depends_on == []:
        spec.depends_on = None
    if spec.depends_on is None:
        if spec.run_after is not RunAfter.SUCCEEDED:
            raise InvalidJobError("run_after needs depends_on (field `run_after`)")
        return
    seen: set[uuid.UUID] = set()
    for index, parent in enumerate(spec.depends_on):
        if parent in seen:
            raise InvalidJobError(
                f"depends_on names job {parent} twice (field `depends_on[{index}]`)"
            )
        seen.add(parent)
    if spec.coalescing:
        # A queued coalescing job is joined by later triggers; a waiting one has no dispatch
        # to join, and two of them would collide once released.
        raise InvalidJobError("a job with depends_on cannot be coalescing (field `coalescing`)")
