"""Read and write jobs the way end-to-end tests need: enqueue, inspect rows and events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_session_factory
from app.domain.spec import JobCreate
from app.domain.states import FINAL_STATUSES
from app.jobs.enqueue import enqueue_in_session, enqueue_many_in_session
from app.jobs.service import JobService
from app.settings import Settings
from tests.support.waiting import wait_until

FINAL = {status.value for status in FINAL_STATUSES}


@dataclass
class JobsDb:
    """One test database seen from the test process."""

    engine: AsyncEngine
    settings: Settings

    @property
    def service(self) -> JobService:
        """The JobService the API uses, on this database."""
        return JobService(create_session_factory(self.engine), self.settings)

    async def enqueue(
        self,
        task: str = "noop",
        args: dict[str, Any] | None = None,
        *,
        lock_key: str | None = None,
        queue: str = "etl.default",
        **spec: Any,
    ) -> uuid.UUID:
        """Create a job in a committed transaction (as in-app callers do); returns its id."""
        job_spec = JobCreate(
            queue=queue,
            task=task,
            args=args or {},
            lock_key=lock_key or f"key-{uuid.uuid4().hex[:8]}",
            **spec,
        )
        async with create_session_factory(self.engine)() as session, session.begin():
            result = await enqueue_in_session(session, job_spec, self.settings)
        return result.job_id

    async def fetch(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of `sql` as dicts."""
        async with self.engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return [dict(row._mapping) for row in result]

    async def scalar(self, sql: str, **params: Any) -> Any:
        """The single value of `sql`."""
        async with self.engine.connect() as connection:
            return (await connection.execute(text(sql), params)).scalar()

    async def execute(self, sql: str, **params: Any) -> None:
        """Run `sql` and commit."""
        async with self.engine.begin() as connection:
            await connection.execute(text(sql), params)

    async def job(self, job_id: uuid.UUID) -> dict[str, Any]:
        """The job's dl_jobs row."""
        rows = await self.fetch("SELECT * FROM dl_jobs WHERE job_id = :id", id=job_id)
        assert rows, f"job {job_id} does not exist"
        return rows[0]

    async def events(self, job_id: uuid.UUID) -> list[dict[str, Any]]:
        """The job's events in the order they were written."""
        return await self.fetch(
            "SELECT id, event, attempt, at, details FROM dl_job_events"
            " WHERE job_id = :id ORDER BY id",
            id=job_id,
        )

    async def event_names(self, job_id: uuid.UUID) -> list[str]:
        """The job's event names in order."""
        return [event["event"] for event in await self.events(job_id)]

    async def now(self) -> datetime:
        """The database clock."""
        value: datetime = await self.scalar("SELECT clock_timestamp()")
        return value

    async def pgqueuer_rows(self, pgq_job_id: int | None = None) -> list[dict[str, Any]]:
        """pgqueuer's dispatch rows (all, or the one with this id)."""
        if pgq_job_id is None:
            return await self.fetch("SELECT id, status::text, entrypoint FROM pgqueuer ORDER BY id")
        return await self.fetch(
            "SELECT id, status::text, entrypoint FROM pgqueuer WHERE id = :id", id=pgq_job_id
        )

    async def wait_status(
        self,
        job_id: uuid.UUID,
        *statuses: str,
        timeout: float,
        diagnostics: Any = None,
    ) -> dict[str, Any]:
        """Poll until the job has one of `statuses`; returns its row.

        Fails at once when the job reaches a final status that was not asked for.
        """

        async def reached() -> dict[str, Any] | None:
            row = await self.job(job_id)
            if row["status"] in statuses:
                return row
            if row["status"] in FINAL and row["status"] not in statuses:
                extra = f"\n{diagnostics()}" if diagnostics is not None else ""
                raise AssertionError(
                    f"job {job_id} ended {row['status']} (error {row['error']!r}), "
                    f"expected {statuses}; events {await self.event_names(job_id)}{extra}"
                )
            return None

        row: dict[str, Any] = await wait_until(
            reached,
            timeout=timeout,
            what=f"job {job_id} to become {'/'.join(statuses)}",
            diagnostics=diagnostics,
        )
        return row

    async def wait_event(
        self,
        job_id: uuid.UUID,
        event: str,
        *,
        timeout: float,
        count: int = 1,
        diagnostics: Any = None,
    ) -> list[dict[str, Any]]:
        """Poll until the job has at least `count` events named `event`; returns them."""

        async def seen() -> list[dict[str, Any]] | None:
            found = [e for e in await self.events(job_id) if e["event"] == event]
            return found if len(found) >= count else None

        found: list[dict[str, Any]] = await wait_until(
            seen,
            timeout=timeout,
            what=f"{count} {event!r} event(s) of job {job_id}",
            diagnostics=diagnostics,
        )
        return found


async def enqueue_all(jobs_db: JobsDb, specs: Sequence[JobCreate]) -> list[uuid.UUID]:
    """Create every job in one transaction; their ids in order."""
    async with create_session_factory(jobs_db.engine)() as session, session.begin():
        results = await enqueue_many_in_session(session, specs, jobs_db.settings)
    return [result.job_id for result in results]


def seconds(delta: timedelta) -> float:
    """A timedelta in seconds."""
    return delta.total_seconds()
