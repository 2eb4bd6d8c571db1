"""The job gauges GET /metrics shows, read in one short read-only transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import metrics_queries
from app.observability.metrics import JobGauges


async def read_job_gauges(sessions: async_sessionmaker[AsyncSession]) -> JobGauges:
    """Jobs by queue and status and the oldest queued age, as the database has them now."""
    async with sessions() as session:
        return await metrics_queries.job_gauges(session)
