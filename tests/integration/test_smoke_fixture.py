"""The fixtures give a migrated database."""

from __future__ import annotations

import asyncpg


async def test_database_dsn_is_migrated(database_dsn: str) -> None:
    connection = await asyncpg.connect(database_dsn)
    try:
        tables = {
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public'"
            )
        }
    finally:
        await connection.close()
    assert {"dl_jobs", "dl_job_events", "pgqueuer", "pgqueuer_log"} <= tables
