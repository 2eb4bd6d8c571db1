"""The SQL that completes batches: dl_batch_count() (a trigger on dl_jobs) and
dl_batch_complete(), which creates a batch's completion callback exactly once.

A batch is the jobs one bulk trigger created with an `on_complete` callback (dl_batches).
Every status change of a batch job that reaches a final status, or leaves one (a retry),
updates the batch's row in the same transaction as the change: its `pending` count and its
counts by final status. The change that takes `pending` to zero creates the callback job
through dl_enqueue(), with the counts in its args under `batch`, in that same transaction.

Exactly once: the batch's row is updated, so locked, by each counting change; two jobs
ending at the same moment on two hosts take turns on it, and only the second sees zero.
`completed_at` is set with the callback, and a completed batch counts nothing more (a retry
after completion does not create a second callback). A worker that dies mid-job changes no
status; the reaper's change later counts like any other. A callback that dl_enqueue()
refuses (it was checked when the batch was created, so this should not happen) does not
undo the job's final status: the batch records the refusal in `callback_error`.

The functions are installed by migration 0020; a change to what they render needs a new
migration that installs them again (tests/integration/test_batches.py compares them).
"""

from __future__ import annotations

from app.db.sql_common import qualified, quote_ident
from app.domain.states import FINAL_STATUSES

TRIGGER = "dl_jobs_batch_count"
_FINAL = ", ".join(f"'{status.value}'" for status in sorted(FINAL_STATUSES))
# The callback's JobCreate fields that dl_enqueue() takes, as stored in dl_batches.callback.
_TEXT_FIELDS = (
    "queue",
    "task",
    "lock_key",
    "partition_key",
    "producer",
    "consumer_group",
    "concurrency_key",
    "rate_key",
)
_INT_FIELDS = ("priority", "max_attempts", "lease_ttl_sec", "concurrency_limit")


def _counts(alias: str) -> str:
    """SQL: the batch summary a callback gets as args.batch."""
    return (
        f"jsonb_build_object('batch_id', {alias}.batch_id, 'total', {alias}.total, "
        f"'succeeded', {alias}.succeeded, 'failed', {alias}.failed, "
        f"'canceled', {alias}.canceled, 'lost', {alias}.lost)"
    )


def complete_function(schema: str) -> str:
    """CREATE FUNCTION dl_batch_complete(batch_id): mark it complete, create its callback."""
    s = quote_ident(schema)
    batches = qualified(schema, "dl_batches")
    fields = [f"{name} => b.callback->>'{name}'" for name in _TEXT_FIELDS]
    fields += [f"{name} => (b.callback->>'{name}')::integer" for name in _INT_FIELDS]
    named = ",\n                ".join(fields)
    return f"""
CREATE OR REPLACE FUNCTION {s}.dl_batch_complete(completed uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $complete$
DECLARE
    b record;
    callback_id uuid;
BEGIN
    -- Called once per batch: by the change that took `pending` to zero (dl_batch_count
    -- counts nothing for a completed batch), or at creation for a batch of no job.
    UPDATE {batches} SET completed_at = clock_timestamp()
    WHERE batch_id = completed
    RETURNING * INTO b;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    BEGIN
        SELECT e.job_id INTO callback_id FROM {s}.dl_enqueue(
                {named},
                args => coalesce(b.callback->'args', '{{}}'::jsonb)
                        || jsonb_build_object('batch', {_counts("b")})
            ) e;
        UPDATE {batches} SET callback_job_id = callback_id WHERE batch_id = completed;
    EXCEPTION WHEN OTHERS THEN
        UPDATE {batches} SET callback_error = SQLERRM WHERE batch_id = completed;
    END;
END
$complete$
"""


def count_function(schema: str) -> str:
    """CREATE FUNCTION dl_batch_count(): the trigger function of TRIGGER."""
    s = quote_ident(schema)
    batches = qualified(schema, "dl_batches")

    def moved(status: str, sign: str) -> str:
        return ", ".join(
            f"{name} = {name} {sign} ({status} = '{name}')::integer"
            for name in ("succeeded", "failed", "canceled", "lost")
        )

    return f"""
CREATE OR REPLACE FUNCTION {s}.dl_batch_count() RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $count$
DECLARE
    was_final boolean := OLD.status IN ({_FINAL});
    is_final boolean := NEW.status IN ({_FINAL});
    left_over integer;
BEGIN
    IF is_final AND NOT was_final THEN
        UPDATE {batches} SET pending = pending - 1, {moved("NEW.status", "+")}
        WHERE batch_id = NEW.batch_id AND completed_at IS NULL
        RETURNING pending INTO left_over;
        IF left_over = 0 THEN
            PERFORM {s}.dl_batch_complete(NEW.batch_id);
        END IF;
    ELSIF was_final AND NOT is_final THEN
        -- Retried before the batch completed: it counts again once it ends.
        UPDATE {batches} SET pending = pending + 1, {moved("OLD.status", "-")}
        WHERE batch_id = NEW.batch_id AND completed_at IS NULL;
    END IF;
    RETURN NULL;
END
$count$
"""


def trigger_statement(schema: str) -> str:
    """CREATE TRIGGER: only status changes of batch jobs call it (other jobs pay nothing)."""
    return f"""
CREATE TRIGGER {TRIGGER} AFTER UPDATE OF status ON {qualified(schema, "dl_jobs")}
FOR EACH ROW WHEN (NEW.batch_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION {quote_ident(schema)}.dl_batch_count()
"""


def install_statements(schema: str) -> list[str]:
    """The functions, then the trigger, in dependency order."""
    return [complete_function(schema), count_function(schema), trigger_statement(schema)]


def uninstall_statements(schema: str) -> list[str]:
    """The trigger, then the functions."""
    s = quote_ident(schema)
    return [
        f"DROP TRIGGER IF EXISTS {TRIGGER} ON {qualified(schema, 'dl_jobs')}",
        f"DROP FUNCTION IF EXISTS {s}.dl_batch_count()",
        f"DROP FUNCTION IF EXISTS {s}.dl_batch_complete(uuid)",
    ]
