"""Fair queues in SQL: each job's round, its dispatch's priority, and the rebase that keeps
rounds within what a dispatch can carry. Functions flush, never commit.

A job triggered into a fair queue (dl_queues.fair_by_partition) gets a round: one more than
the last queued job of its tenant (its partition_key; jobs without one are one tenant), and
never less than the round the queue's due jobs have reached (its front). So a tenant with
100,000 queued jobs holds rounds front .. front+99,999, and a tenant that arrives later
takes rounds from the front on: its first job waits behind at most one job of each tenant.
Jobs of one trigger call take consecutive rounds in the order given. Rounds only grow and a
job keeps its round through retries and postpones.

pgqueuer dequeues by its priority (higher first) and id, so a fair job's dispatch carries
both orders in that one integer: -(priority * ROUND_SPAN + round - fair_base). Priority
still comes first; within a priority, the lower round. Only ROUND_SPAN rounds ahead of the
base fit, so the base follows the front: when the front has moved REBASE_AFTER rounds past
it, rebase_in_session moves the base to the front and rewrites the queue's queued
dispatches. Rounds further ahead than the span share the last value and start in trigger
order until the base catches up.

Concurrency: triggers of one tenant at the same moment may take equal rounds; pgqueuer's
id then orders them, and nothing waits. A dispatch reads its queue's dl_queues row FOR
SHARE, so a rebase (which updates that row first) waits for every dispatch in flight and
then rewrites them, and a dispatch that waited for a rebase reads the new base.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.pgqueuer_schema import pgqueuer_settings
from app.db.sql_common import qualified
from app.domain.fairness import Rebase
from app.domain.states import JobStatus

# 2**17 rounds ahead of the base; with priorities up to 10,000 the dispatch priority stays
# within pgqueuer's integer: 10,000 * 2**17 + 2**17 < 2**31.
ROUND_SPAN = 131_072
# The base moves when the front is this far past it: a rewrite of the queue's queued
# dispatches once every REBASE_AFTER rounds, and always 3/4 of the span left ahead.
REBASE_AFTER = ROUND_SPAN // 4
_QUEUED = JobStatus.QUEUED.value


def tenant_sql(alias: str) -> str:
    """The tenant of the row `alias`: its partition_key, '' for none (never a valid key).

    Spelled as ix_dl_jobs_fair_tenant's expression, which lookups must match."""
    return f"coalesce({alias}.partition_key, '')"


def _front_sql(schema: str, queue: str) -> str:
    """The lowest round of the queue's due queued jobs (NULL when it has none)."""
    return f"""(SELECT j.fair_round FROM {qualified(schema, "dl_jobs")} j
                 WHERE j.queue = {queue} AND j.status = '{_QUEUED}'
                   AND j.fair_round IS NOT NULL AND j.available_at <= now()
                 ORDER BY j.fair_round LIMIT 1)"""


def first_rounds_cte(schema: str, rows: str) -> str:
    """CTE `fair_first`: the round the first new job of each fair (queue, tenant) takes.

    `rows` is a SELECT with the new jobs' queue and partition_key. A queue that is not fair
    has no row here, so its jobs get no round.
    """
    jobs = qualified(schema, "dl_jobs")
    return f"""
    fair_first AS MATERIALIZED (
        SELECT t.queue, t.tenant, greatest(
                   (SELECT j.fair_round + 1 FROM {jobs} j
                    WHERE j.queue = t.queue AND {tenant_sql("j")} = t.tenant
                      AND j.status = '{_QUEUED}' AND j.fair_round IS NOT NULL
                    ORDER BY j.fair_round DESC LIMIT 1),
                   {_front_sql(schema, "t.queue")},
                   t.fair_base) AS first_round
        FROM (SELECT DISTINCT r.queue, {tenant_sql("r")} AS tenant, q.fair_base
              FROM ({rows}) r
              JOIN {qualified(schema, "dl_queues")} q
                ON q.queue = r.queue AND q.fair_by_partition) t
    )"""


def round_sql(row: str, order: str) -> str:
    """The round of the new job `row` (NULL outside a fair queue): its tenant's first round,
    plus its place among the tenant's jobs of this statement by `order`. Needs fair_first
    joined as `f` on the row's queue and tenant."""
    return (
        f"f.first_round + row_number() OVER ("
        f"PARTITION BY {row}.queue, {tenant_sql(row)} ORDER BY {order}) - 1"
    )


def join_first_round(row: str) -> str:
    """The join that round_sql needs."""
    return f"LEFT JOIN fair_first f ON f.queue = {row}.queue AND f.tenant = {tenant_sql(row)}"


def bases_cte(schema: str, source: str) -> str:
    """CTE `fair_bases`: the base of each queue `source` has a fair job for, read FOR SHARE
    (a concurrent rebase waits for this transaction; one that went first is seen)."""
    return f"""
        fair_bases AS MATERIALIZED (
            SELECT q.queue, q.fair_base FROM {qualified(schema, "dl_queues")} q
            WHERE q.queue IN (SELECT queue FROM {source} WHERE fair_round IS NOT NULL)
            FOR SHARE
        ),"""


def dispatch_priority_sql(priority: str, fair_round: str, base: str) -> str:
    """pgqueuer's priority for a dispatch: -priority, or for a fair job the one integer that
    orders by (priority, round - base)."""
    ahead = f"least(greatest({fair_round} - {base}, 0), {ROUND_SPAN - 1})"
    return (
        f"CASE WHEN {fair_round} IS NULL OR {base} IS NULL THEN -{priority}"
        f" ELSE -({priority} * {ROUND_SPAN} + {ahead}) END"
    )


# --- rebase ------------------------------------------------------------------------------


async def queues_to_rebase(session: AsyncSession, schema: str) -> list[tuple[str, int]]:
    """The queues whose front is REBASE_AFTER rounds or more past the base, with the front.

    dl_queues is tiny; each row costs one look at the front of ix_dl_jobs_fair_front.
    """
    result = await session.execute(
        text(
            f"""SELECT queue, front FROM (
                    SELECT q.queue, q.fair_base, {_front_sql(schema, "q.queue")} AS front
                    FROM {qualified(schema, "dl_queues")} q
                ) fronts
                WHERE front - fair_base >= {REBASE_AFTER}"""
        )
    )
    return [(row.queue, int(row.front)) for row in result]


async def rebase_in_session(session: AsyncSession, schema: str, queue: str, base: int) -> Rebase:
    """Move the queue's base to `base` and rewrite its queued fair dispatches to match.

    Two statements, in this order: the row update waits for every transaction that read
    the row FOR SHARE (a dispatch in flight), and the rewrite, which takes its snapshot
    after that, sees their dispatches.
    """
    moved = await session.execute(
        text(
            f"UPDATE {qualified(schema, 'dl_queues')} SET fair_base = :base, updated_at = now()"
            " WHERE queue = :queue AND fair_base < :base"
        ),
        {"queue": queue, "base": base},
    )
    if not _rowcount(moved):  # another leader's pass went as far already
        return Rebase(queue=queue, base=base, rewritten=0)
    pgq = pgqueuer_settings(schema).qualified
    priority = dispatch_priority_sql("j.priority", "j.fair_round", "CAST(:base AS bigint)")
    result = await session.execute(
        text(
            f"""UPDATE {pgq.queue_table} d SET priority = {priority}
                FROM {qualified(schema, "dl_jobs")} j
                WHERE j.queue = :queue AND j.status = '{_QUEUED}'
                  AND j.fair_round IS NOT NULL
                  AND d.id = j.pgq_job_id AND d.status = 'queued'"""
        ),
        {"queue": queue, "base": base},
    )
    return Rebase(queue=queue, base=base, rewritten=_rowcount(result))


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
