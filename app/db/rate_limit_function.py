"""dl_rate_admit(): the fleet's shared start-rate buckets, decided inside the start statement.

A queue's limits live on its dl_queues row (start_limit/start_period_sec for the queue,
rate_key_limit/rate_key_period_sec for each rate_key). Each limit is a bucket, a
dl_rate_buckets row per (queue, rate_key), '' naming the queue's own: a sliding log of the
starts of the last period, as (time, count) pairs because one call starts a whole batch at
one time. The worker's start statement (app.db.job_batches) calls the function with the
jobs that got their lock and slot, in batch order, and starts only those it admits, so the
charge and the start commit together (a rolled-back start charges nothing).

Exact across hosts: callers of one bucket take a transaction-scoped advisory lock on it
(two-int form, apart from the bigint keys of lock_key locks and group slots), in one order
so no two callers deadlock, and read the bucket after they hold it. Every start of a call is
stamped with the one time `t` read after the locks, which the start statement also writes
as the started event's time: a window (t - period, t] then never holds more than `count`.

A refused job is told when to come back (a worker told "in a moment" waits in place and asks
again, worker.runner). A job arriving for the first time joins the
bucket's line of promises: `count` jobs per period after the moment a slot frees, so a large
backlog comes back a period's worth at a time instead of all at once. A job that already
waited (dl_jobs.waiting_for = 'rate_limit') and was refused again, because it came back just
before its slot freed or a newcomer took it, is told the moment the next slot frees.
"""

from __future__ import annotations

from app.db.sql_common import qualified, quote_ident
from app.domain.rate_limits import RateScope

# The first key of the two-int advisory locks on buckets ('dlrt').
BUCKET_LOCK_CLASS = 0x646C7274
# Separates queue and rate_key in a bucket's name: a queue name holds only letters, digits
# and . _ : -, so (queue, rate_key) pairs never spell the same name.
SEPARATOR = "E'\\x1f'"


def admit_function(schema: str) -> str:
    """CREATE FUNCTION dl_rate_admit(job_ids, queues, rate_keys, waiting)."""
    queues = qualified(schema, "dl_queues")
    buckets = qualified(schema, "dl_rate_buckets")
    queue_scope, key_scope = RateScope.QUEUE.value, RateScope.RATE_KEY.value
    return f"""
CREATE OR REPLACE FUNCTION {quote_ident(schema)}.dl_rate_admit(
    p_job_ids uuid[], p_queues text[], p_rate_keys text[], p_waiting boolean[]
) RETURNS TABLE (job_id uuid, admitted boolean, decided_at timestamptz,
                 retry_at timestamptz, limited_by text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $admit$
#variable_conflict use_column
DECLARE
    t timestamptz;
    b_ids text[];
    b_queue text[];
    b_key text[];
    b_count int[];
    b_period interval[];
    b_free int[];
    b_used int[];
    b_next timestamptz[];
    b_pat timestamptz[];
    b_pn int[];
    b_changed boolean[];
    i int;
    b int;
    qi int;
    ki int;
    p timestamptz;
    r_at timestamptz;
    r_by text;
BEGIN
    IF coalesce(cardinality(p_job_ids), 0) = 0 THEN
        RETURN;
    END IF;
    -- The buckets this call touches, in the fixed order they are locked in. One statement
    -- each for the list, the locks, the read and the write: a start statement holds the
    -- queue's bucket until it commits, so the fleet's starts take turns for this long.
    SELECT array_agg(s.queue || {SEPARATOR} || s.rate_key ORDER BY s.ord),
           array_agg(s.queue ORDER BY s.ord), array_agg(s.rate_key ORDER BY s.ord),
           array_agg(s.count ORDER BY s.ord), array_agg(s.period ORDER BY s.ord)
    INTO b_ids, b_queue, b_key, b_count, b_period
    FROM (
        SELECT l.*, row_number() OVER (
                   ORDER BY hashtext(l.queue || {SEPARATOR} || l.rate_key), l.queue, l.rate_key
               ) AS ord
        FROM (
            SELECT q.queue, ''::text AS rate_key, q.start_limit AS count,
                   make_interval(secs => q.start_period_sec) AS period
            FROM {queues} q
            WHERE q.queue = ANY(p_queues) AND q.start_limit IS NOT NULL
            UNION
            SELECT q.queue, r.rate_key, q.rate_key_limit,
                   make_interval(secs => q.rate_key_period_sec)
            FROM unnest(p_queues, p_rate_keys) AS r(queue, rate_key)
            JOIN {queues} q ON q.queue = r.queue
            WHERE r.rate_key IS NOT NULL AND q.rate_key_limit IS NOT NULL
        ) l
    ) s;
    IF b_ids IS NULL THEN
        RETURN QUERY SELECT u.id, true, NULL::timestamptz, NULL::timestamptz, NULL::text
                     FROM unnest(p_job_ids) AS u(id);
        RETURN;
    END IF;
    -- A function scan yields the array in its order: the locks are taken in that order.
    PERFORM pg_advisory_xact_lock({BUCKET_LOCK_CLASS}, hashtext(u.id))
    FROM unnest(b_ids) AS u(id);
    -- Read after the locks: every earlier holder's starts are committed and seen.
    t := clock_timestamp();
    SELECT array_agg(u.count - coalesce(st.used, 0) ORDER BY u.n),
           array_agg(0 ORDER BY u.n),
           -- When this window's first start ages out: a slot frees then.
           array_agg(coalesce(st.oldest, t) + u.period ORDER BY u.n),
           array_agg(st.promise_at ORDER BY u.n),
           array_agg(coalesce(st.promise_n, 0) ORDER BY u.n),
           array_agg(false ORDER BY u.n)
    INTO b_free, b_used, b_next, b_pat, b_pn, b_changed
    FROM unnest(b_queue, b_key, b_count, b_period) WITH ORDINALITY
         AS u(queue, rate_key, count, period, n)
    LEFT JOIN LATERAL (
        SELECT sum(e.n) FILTER (WHERE e.at > t - u.period) AS used,
               min(e.at) FILTER (WHERE e.at > t - u.period) AS oldest,
               max(k.promise_at) AS promise_at, max(k.promise_n) AS promise_n
        FROM {buckets} k
        LEFT JOIN LATERAL unnest(k.started_at, k.started_n) AS e(at, n) ON true
        WHERE k.queue = u.queue AND k.rate_key = u.rate_key
    ) st ON true;
    FOR i IN 1..cardinality(p_job_ids) LOOP
        qi := array_position(b_ids, p_queues[i] || {SEPARATOR});
        ki := CASE WHEN p_rate_keys[i] IS NULL THEN NULL
                   ELSE array_position(b_ids, p_queues[i] || {SEPARATOR} || p_rate_keys[i]) END;
        IF (qi IS NULL OR b_free[qi] > 0) AND (ki IS NULL OR b_free[ki] > 0) THEN
            FOREACH b IN ARRAY array_remove(ARRAY[qi, ki], NULL) LOOP
                b_free[b] := b_free[b] - 1;
                b_used[b] := b_used[b] + 1;
                b_changed[b] := true;
            END LOOP;
            job_id := p_job_ids[i];
            admitted := true;
            decided_at := t;
            retry_at := NULL;
            limited_by := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        r_at := t;
        r_by := NULL;
        FOREACH b IN ARRAY array_remove(ARRAY[qi, ki], NULL) LOOP
            CONTINUE WHEN b_free[b] > 0;
            IF coalesce(p_waiting[i], false) THEN
                p := b_next[b];
            ELSE
                IF b_pat[b] IS NULL OR b_pat[b] < b_next[b] THEN
                    b_pat[b] := b_next[b];
                    b_pn[b] := 0;
                ELSIF b_pn[b] >= b_count[b] THEN
                    b_pat[b] := b_pat[b] + b_period[b];
                    b_pn[b] := 0;
                END IF;
                b_pn[b] := b_pn[b] + 1;
                b_changed[b] := true;
                p := b_pat[b];
            END IF;
            IF p >= r_at THEN
                r_at := p;
                r_by := CASE WHEN b = ki THEN '{key_scope}' ELSE '{queue_scope}' END;
            END IF;
        END LOOP;
        job_id := p_job_ids[i];
        admitted := false;
        decided_at := t;
        retry_at := r_at;
        limited_by := r_by;
        RETURN NEXT;
    END LOOP;
    -- The changed buckets in one write: the starts still inside their window, then this
    -- call's (read from the rows the locks keep still).
    INSERT INTO {buckets} AS k (queue, rate_key, started_at, started_n, promise_at,
                                 promise_n, updated_at)
    SELECT u.queue, u.rate_key,
           ARRAY(SELECT e.at FROM unnest(cur.started_at, cur.started_n) AS e(at, n)
                 WHERE e.at > t - u.period ORDER BY e.at)
           || CASE WHEN u.used > 0 THEN ARRAY[t] ELSE '{{}}'::timestamptz[] END,
           ARRAY(SELECT e.n FROM unnest(cur.started_at, cur.started_n) AS e(at, n)
                 WHERE e.at > t - u.period ORDER BY e.at)
           || CASE WHEN u.used > 0 THEN ARRAY[u.used] ELSE '{{}}'::int[] END,
           u.pat, u.pn, t
    FROM unnest(b_queue, b_key, b_period, b_used, b_pat, b_pn, b_changed)
         AS u(queue, rate_key, period, used, pat, pn, changed)
    LEFT JOIN {buckets} cur ON cur.queue = u.queue AND cur.rate_key = u.rate_key
    WHERE u.changed
    ON CONFLICT (queue, rate_key) DO UPDATE SET
        started_at = EXCLUDED.started_at,
        started_n = EXCLUDED.started_n,
        promise_at = EXCLUDED.promise_at,
        promise_n = EXCLUDED.promise_n,
        updated_at = EXCLUDED.updated_at;
END
$admit$
"""


def install_statements(schema: str) -> list[str]:
    """The statements that (re)install dl_rate_admit in `schema`."""
    return [admit_function(schema)]


def uninstall_statements(schema: str) -> list[str]:
    """The statements that drop it."""
    return [
        f"DROP FUNCTION IF EXISTS {quote_ident(schema)}.dl_rate_admit("
        "uuid[], text[], text[], boolean[])"
    ]
