"""HistoryPruner: deletes old history in small batches, each batch a transaction of its own.

The leader's retention service decides when and how much; this is where the rows go. Old
finished jobs go with their events, pgqueuer's log and statistics (which pgqueuer never
prunes) by age, a sweep finds events whose job was deleted by hand, and the rows of
workers that died without leaving go once long expired, completed batches by age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import batches, events, pgqueuer_tables, queues, workers, workflows
from app.db import jobs as job_rows
from app.db.events import OrphanWindow
from app.db.jobs import JobBatch

__all__ = ["HistoryPruner", "JobBatch", "OrphanWindow"]


@dataclass
class HistoryPruner:
    """One method per kind of history; each deletes at most `limit` rows and commits."""

    sessions: async_sessionmaker[AsyncSession]

    async def finished_jobs(self, retention: timedelta, limit: int) -> JobBatch:
        """Jobs that finished before now() - retention, with their events."""
        async with self.sessions() as session, session.begin():
            return await job_rows.delete_finished(session, retention, limit)

    async def pgqueuer_log(self, retention: timedelta, limit: int) -> int:
        """pgqueuer_log rows created before now() - retention; how many went."""
        async with self.sessions() as session, session.begin():
            return await pgqueuer_tables.delete_old_pgqueuer_log(session, retention, limit)

    async def pgqueuer_statistics(self, retention: timedelta, limit: int) -> int:
        """pgqueuer_statistics buckets older than the retention; how many went."""
        async with self.sessions() as session, session.begin():
            return await pgqueuer_tables.delete_old_pgqueuer_statistics(session, retention, limit)

    async def orphan_events(self, retention: timedelta, after_id: int, limit: int) -> OrphanWindow:
        """One window of the sweep for old events whose job is gone, after event `after_id`."""
        async with self.sessions() as session, session.begin():
            return await events.delete_orphan_events(session, retention, after_id, limit)

    async def expired_workers(self, unseen_for: timedelta) -> int:
        """dl_workers rows of workers not seen for `unseen_for`; how many went."""
        async with self.sessions() as session, session.begin():
            return await workers.delete_expired_in_session(session, unseen_for)

    async def emptied_workflows(self, retention: timedelta, limit: int) -> int:
        """dl_workflows rows older than the retention whose steps are all gone."""
        async with self.sessions() as session, session.begin():
            return await workflows.delete_emptied(session, retention, limit)

    async def idle_rate_buckets(self) -> int:
        """dl_rate_buckets rows whose starts all aged out and whose line is empty; how many went."""
        async with self.sessions() as session, session.begin():
            return await queues.delete_idle_buckets_in_session(session)

    async def completed_batches(self, retention: timedelta, limit: int) -> int:
        """dl_batches rows completed before now() - retention; how many went."""
        async with self.sessions() as session, session.begin():
            return await batches.delete_old_batches(session, retention, limit)
