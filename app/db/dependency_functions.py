"""Dependents released in the database: dl_settle_waiting() and the trigger on dl_jobs.

A dependent (dl_jobs.depends_on, with one dl_job_dependencies edge per parent) is created
`waiting`, with no dispatch. Whatever ends a parent (a worker's finish, the reaper marking
it lost, a cancel, an operator's retry) changes its status with an UPDATE, and the trigger
`dl_jobs_dependents` acts in that same transaction, so no path can forget it:

- a parent succeeded: each waiting child whose parents have now all succeeded (run_after
  `any`: all ended) is released: queued, with a pgqueuer dispatch written by dispatch_ctes
  (the one builder of dispatch rows, with its dl_dispatch notice) and a `queued` event;
- a parent ended failed, canceled or lost: every waiting descendant that needs it to
  succeed, down the chain, is canceled in one statement, with canceled_by naming its parent
  on the chain and an event naming it; children with run_after `any` are released once
  all their parents ended;
- a parent that ended so runs again (a retry): the dependents its end canceled
  (canceled_by), down the chain, wait again, and are settled as on creation.

The trigger's WHEN clause reads only the changed row: it fires for a job that has
dependents (has_dependents) whose status changed to or from a final one. An ordinary job
never calls the function.

Concurrency: children are locked in job_id order (FOR NO KEY UPDATE) before their parents
are read, and read again after the lock (READ COMMITTED: each statement of the function sees
what committed before it). Two parents of one child finishing at once on two hosts queue on
the child's row, and the second sees the first's commit: the child is released once, never
twice and never not at all. A creator of a dependent locks the parents (app.db.dependencies)
so a parent cannot end unseen between the creator's read and its commit.

Plans: every statement here looks rows up by primary key (ids in arrays), so the functions
run with generic plans (`plan_cache_mode`), planned once per session; PL/pgSQL's default
would plan them again on every call (about 1 ms each, once per parent that ends).

Migration 0018 installs what this module renders; a change to it (or to dispatch_ctes,
which it embeds) needs a migration that installs it again
(tests/integration/test_dependency_trigger.py compares them).
"""

from __future__ import annotations

from app.db import fairness
from app.db.pgqueuer_tables import ANNOUNCED, dispatch_ctes, next_dispatch_id
from app.db.sql_common import qualified, quote_ident
from app.domain.dependencies import RunAfter
from app.domain.states import FINAL_STATUSES, UNSUCCESSFUL_STATUSES, JobEvent, JobStatus

TRIGGER = "dl_jobs_dependents"


def _in(statuses: frozenset[JobStatus]) -> str:
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(statuses)) + ")"


FINAL = _in(FINAL_STATUSES)
UNSUCCESSFUL = _in(UNSUCCESSFUL_STATUSES)
WAITING = JobStatus.WAITING.value
SUCCEEDED = JobStatus.SUCCEEDED.value
CANCELED = JobStatus.CANCELED.value


def settle_function(schema: str) -> str:
    """CREATE FUNCTION dl_settle_waiting(jobs, find_blockers, cause): release or cancel.

    For each of `jobs` still waiting (locked in job_id order): released when every parent
    succeeded (run_after `any`: ended); with `find_blockers`, canceled when a parent it needs
    ended failed, canceled or lost (canceled_by the first such parent by id). `cause` is the
    parent whose change led here, named on the `queued` event. Returns each of `jobs` with
    its status afterwards.

    find_blockers is off for the trigger's call on a parent's success: a waiting child never
    has an unsuccessful parent then (that parent's own end canceled it), and looking would
    read every parent of a wide fan-in once per parent.
    """
    s = quote_ident(schema)
    jobs = qualified(schema, "dl_jobs")
    rows = f"SELECT w.queue, w.partition_key FROM {jobs} w WHERE w.job_id = ANY(v_release)"
    release = f"""
    WITH {fairness.first_rounds_cte(schema, rows).strip()},
    ranked AS (
        SELECT w.job_id, {fairness.round_sql("w", "w.job_id")} AS fair_round
        FROM {jobs} w {fairness.join_first_round("w")}
        WHERE w.job_id = ANY(v_release)
    ),
    released AS (
        UPDATE {jobs} j
        SET status = '{JobStatus.QUEUED.value}', pgq_job_id = {next_dispatch_id(schema)},
            -- Due from now: the queue's age of its oldest due job stays honest.
            available_at = greatest(j.available_at, now()), fair_round = r.fair_round,
            updated_at = now()
        FROM ranked r
        WHERE j.job_id = r.job_id AND j.status = '{WAITING}'
        RETURNING j.job_id, j.queue, j.task, j.priority, j.available_at, j.pgq_job_id,
                  j.fair_round, j.attempt
    ),
    {dispatch_ctes(schema, "released")},
    logged AS (
        INSERT INTO {qualified(schema, "dl_job_events")} (job_id, event, attempt, details)
        SELECT job_id, '{JobEvent.QUEUED.value}', attempt,
               jsonb_strip_nulls(jsonb_build_object('queue', queue, 'task', task,
                                                    'after', p_cause))
        FROM released
    )
    SELECT count(*) INTO v_count FROM released, {ANNOUNCED};"""
    return f"""
CREATE OR REPLACE FUNCTION {s}.dl_settle_waiting(
    p_jobs uuid[], p_find_blockers boolean DEFAULT true, p_cause uuid DEFAULT NULL
) RETURNS TABLE (job_id uuid, status text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $settle$
#variable_conflict use_column
DECLARE
    v_release uuid[];
    v_cancel uuid[];
    v_causes uuid[];
    v_count bigint;
BEGIN
    -- In job_id order: settlers of overlapping children queue up, never deadlock.
    PERFORM 1 FROM {jobs} j
    WHERE j.job_id = ANY(p_jobs) AND j.status = '{WAITING}'
    ORDER BY j.job_id
    FOR NO KEY UPDATE;
    -- A statement of its own, so a snapshot of its own: taken after the locks, it sees every
    -- parent that ended in a transaction this one waited for. (Read in the locking
    -- statement, the parents would be as they were before the wait.)
    WITH locked AS (
        SELECT j.job_id, j.run_after, j.depends_on
        FROM {jobs} j
        WHERE j.job_id = ANY(p_jobs) AND j.status = '{WAITING}'
    ),
    verdicts AS (
        SELECT l.job_id,
               -- Stops at the first parent still in the way (by id).
               NOT EXISTS (
                   SELECT 1 FROM {jobs} p
                   WHERE p.job_id = ANY(l.depends_on) AND p.status <> '{SUCCEEDED}'
                     AND (l.run_after = '{RunAfter.SUCCEEDED.value}'
                          OR p.status NOT IN {FINAL})
               ) AS ready,
               CASE WHEN p_find_blockers AND l.run_after = '{RunAfter.SUCCEEDED.value}' THEN (
                   SELECT p.job_id FROM {jobs} p
                   WHERE p.job_id = ANY(l.depends_on) AND p.status IN {UNSUCCESSFUL}
                   ORDER BY p.job_id LIMIT 1
               ) END AS blocker
        FROM locked l
    )
    SELECT array_agg(v.job_id ORDER BY v.job_id) FILTER (WHERE v.ready),
           array_agg(v.job_id ORDER BY v.job_id)
               FILTER (WHERE NOT v.ready AND v.blocker IS NOT NULL),
           array_agg(v.blocker ORDER BY v.job_id)
               FILTER (WHERE NOT v.ready AND v.blocker IS NOT NULL)
    INTO v_release, v_cancel, v_causes
    FROM verdicts v;
    IF v_release IS NOT NULL THEN{release}
    END IF;
    IF v_cancel IS NOT NULL THEN
        PERFORM {s}.dl_cancel_dependents(v_cancel, v_causes);
    END IF;
    RETURN QUERY SELECT j.job_id, j.status FROM {jobs} j WHERE j.job_id = ANY(p_jobs);
END
$settle$
"""


def cancel_function(schema: str) -> str:
    """CREATE FUNCTION dl_cancel_dependents(jobs, causes): waiting -> canceled, naming why.

    `causes[i]` is the parent whose end cancels `jobs[i]`; the job's error and its
    `canceled` event name it (and its step, in a workflow) with its status. Locked in
    job_id order; a job no longer waiting is left alone. Returns how many it canceled.
    """
    jobs = qualified(schema, "dl_jobs")
    return f"""
CREATE OR REPLACE FUNCTION {quote_ident(schema)}.dl_cancel_dependents(
    p_jobs uuid[], p_causes uuid[]
) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $cancel$
DECLARE
    v_count bigint;
BEGIN
    WITH doomed AS (
        SELECT d.job_id, d.cause FROM unnest(p_jobs, p_causes) AS d(job_id, cause)
    ),
    locked AS MATERIALIZED (
        SELECT j.job_id FROM {jobs} j
        WHERE j.job_id = ANY(p_jobs) AND j.status = '{WAITING}'
        ORDER BY j.job_id
        FOR NO KEY UPDATE
    ),
    canceled AS (
        UPDATE {jobs} j
        SET status = '{CANCELED}', canceled_by = d.cause, finished_at = now(),
            updated_at = now(), pgq_job_id = NULL,
            error = format('canceled: it depends on job %s%s, which ended %s', d.cause,
                           coalesce(' (step ' || p.step_name || ')', ''),
                           CASE WHEN d.cause = ANY(p_jobs) THEN '{CANCELED}' ELSE p.status END)
        FROM locked l JOIN doomed d ON d.job_id = l.job_id
             JOIN {jobs} p ON p.job_id = d.cause
        WHERE j.job_id = l.job_id AND j.status = '{WAITING}'
        -- A parent canceled by this same statement still reads as it was before it.
        RETURNING j.job_id, j.attempt, d.cause,
                  CASE WHEN d.cause = ANY(p_jobs) THEN '{CANCELED}' ELSE p.status END
                      AS parent_status,
                  p.step_name AS parent_step
    ),
    logged AS (
        INSERT INTO {qualified(schema, "dl_job_events")} (job_id, event, attempt, details)
        SELECT job_id, '{JobEvent.CANCELED.value}', attempt,
               jsonb_strip_nulls(jsonb_build_object('parent', cause,
                   'parent_status', parent_status, 'parent_step', parent_step))
        FROM canceled
    )
    SELECT count(*) INTO v_count FROM canceled;
    RETURN v_count;
END
$cancel$
"""


def trigger_function(schema: str) -> str:
    """CREATE FUNCTION dl_jobs_dependents_changed(): the trigger's body (module docstring)."""
    s = quote_ident(schema)
    jobs = qualified(schema, "dl_jobs")
    edges = qualified(schema, "dl_job_dependencies")
    needs_success = f"c.run_after = '{RunAfter.SUCCEEDED.value}'"
    return f"""
CREATE OR REPLACE FUNCTION {s}.dl_jobs_dependents_changed() RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $changed$
DECLARE
    v_children uuid[];
    v_doomed uuid[];
    v_causes uuid[];
    v_again uuid[];
BEGIN
    IF NEW.status = '{SUCCEEDED}' THEN
        SELECT array_agg(d.child_id) INTO v_children
        FROM {edges} d WHERE d.parent_id = NEW.job_id;
        IF v_children IS NOT NULL THEN
            PERFORM {s}.dl_settle_waiting(v_children, false, NEW.job_id);
        END IF;
    ELSIF NEW.status IN {UNSUCCESSFUL} THEN
        -- The whole chain at once (one statement, locks in job_id order): a cascade through
        -- the trigger itself would nest once per generation.
        WITH RECURSIVE doomed(job_id, cause) AS (
            SELECT d.child_id, NEW.job_id
            FROM {edges} d JOIN {jobs} c ON c.job_id = d.child_id
            WHERE d.parent_id = NEW.job_id AND c.status = '{WAITING}' AND {needs_success}
            UNION
            SELECT d.child_id, x.job_id
            FROM doomed x JOIN {edges} d ON d.parent_id = x.job_id
                 JOIN {jobs} c ON c.job_id = d.child_id
            WHERE c.status = '{WAITING}' AND {needs_success}
        )
        SELECT array_agg(one.job_id ORDER BY one.job_id), array_agg(one.cause ORDER BY one.job_id)
        INTO v_doomed, v_causes
        FROM (SELECT DISTINCT ON (x.job_id) x.job_id, x.cause FROM doomed x
              ORDER BY x.job_id, x.cause) one;
        IF v_doomed IS NOT NULL THEN
            PERFORM {s}.dl_cancel_dependents(v_doomed, v_causes);
        END IF;
        -- Children that run whatever the outcome: this end may be the last they wait for.
        SELECT array_agg(d.child_id) INTO v_children
        FROM {edges} d JOIN {jobs} c ON c.job_id = d.child_id
        WHERE d.parent_id = NEW.job_id AND c.status = '{WAITING}'
          AND c.run_after = '{RunAfter.ANY.value}';
        IF v_children IS NOT NULL THEN
            PERFORM {s}.dl_settle_waiting(v_children, false, NEW.job_id);
        END IF;
    END IF;
    IF OLD.status IN {UNSUCCESSFUL} AND NEW.status NOT IN {FINAL} THEN
        -- It runs again: what its end canceled waits again, down the chain.
        WITH RECURSIVE again(job_id) AS (
            SELECT c.job_id
            FROM {edges} d JOIN {jobs} c ON c.job_id = d.child_id
            WHERE d.parent_id = NEW.job_id AND c.status = '{CANCELED}'
              AND c.canceled_by = NEW.job_id
            UNION
            SELECT c.job_id
            FROM again a JOIN {edges} d ON d.parent_id = a.job_id
                 JOIN {jobs} c ON c.job_id = d.child_id
            WHERE c.status = '{CANCELED}' AND c.canceled_by = a.job_id
        )
        SELECT array_agg(a.job_id ORDER BY a.job_id) INTO v_again FROM again a;
        IF v_again IS NOT NULL THEN
            WITH locked AS MATERIALIZED (
                SELECT j.job_id FROM {jobs} j
                WHERE j.job_id = ANY(v_again) AND j.status = '{CANCELED}'
                  AND j.canceled_by IS NOT NULL
                ORDER BY j.job_id
                FOR NO KEY UPDATE
            ),
            waiting AS (
                UPDATE {jobs} j
                SET status = '{WAITING}', canceled_by = NULL, finished_at = NULL, error = NULL,
                    cancel_requested = false, pgq_job_id = NULL, updated_at = now()
                FROM locked l
                WHERE j.job_id = l.job_id
                RETURNING j.job_id, j.attempt
            )
            INSERT INTO {qualified(schema, "dl_job_events")} (job_id, event, attempt, details)
            SELECT w.job_id, '{JobEvent.WAITING.value}', w.attempt,
                   jsonb_build_object('retried', NEW.job_id)
            FROM waiting w;
            -- One of them may need another parent that ended badly: canceled again by it.
            PERFORM {s}.dl_settle_waiting(v_again, true, NEW.job_id);
        END IF;
    END IF;
    RETURN NULL;
END
$changed$
"""


def trigger_statement(schema: str) -> str:
    """CREATE TRIGGER dl_jobs_dependents: only for a job with dependents whose status moved to
    or from a final one (the WHEN clause reads the row alone: free for every other job)."""
    return f"""
CREATE TRIGGER {TRIGGER}
AFTER UPDATE OF status ON {qualified(schema, "dl_jobs")}
FOR EACH ROW
WHEN (NEW.has_dependents AND OLD.status IS DISTINCT FROM NEW.status
      AND (NEW.status IN {FINAL} OR OLD.status IN {UNSUCCESSFUL}))
EXECUTE FUNCTION {quote_ident(schema)}.dl_jobs_dependents_changed()
"""


def install_statements(schema: str) -> list[str]:
    """The statements that install the functions and the trigger, in dependency order."""
    return [
        cancel_function(schema),
        settle_function(schema),
        trigger_function(schema),
        f"DROP TRIGGER IF EXISTS {TRIGGER} ON {qualified(schema, 'dl_jobs')}",
        trigger_statement(schema),
    ]


def uninstall_statements(schema: str) -> list[str]:
    """The statements that drop them."""
    s = quote_ident(schema)
    return [
        f"DROP TRIGGER IF EXISTS {TRIGGER} ON {qualified(schema, 'dl_jobs')}",
        f"DROP FUNCTION IF EXISTS {s}.dl_jobs_dependents_changed()",
        f"DROP FUNCTION IF EXISTS {s}.dl_settle_waiting(uuid[], boolean, uuid)",
        f"DROP FUNCTION IF EXISTS {s}.dl_cancel_dependents(uuid[], uuid[])",
    ]
