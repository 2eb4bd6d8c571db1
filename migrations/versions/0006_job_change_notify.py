"""NOTIFY dl_job_changes when jobs change status, progress or cancel flag (for /stream).

One statement-level trigger with transition tables: a statement that starts or finishes
500 jobs sends one notification (a few when the ids overflow a payload), not 500. The
payload is the comma-separated ids of the rows whose status, progress or cancel_requested
changed; listeners read the rows themselves. Chunks of 200 ids keep each payload about
7,400 bytes, under PostgreSQL's 8,000-byte limit.

A commit that notifies takes a server-wide lock until its WAL is flushed, so notifying
commits no longer share flushes (group commit). The trigger therefore notifies only while
an API process listens: a connection named "dataloader job watch" on this database. The
listener closes that race on its side (app.db.job_changes.wait_for_writers).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations.helpers import queue_schema

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "dl_job_changes"  # app.db.job_changes.JOB_CHANGES_CHANNEL
LISTENER_NAME = "dataloader job watch"  # app.db.job_changes.LISTENER_APPLICATION_NAME
IDS_PER_NOTIFICATION = 200  # 36 characters and a comma each


def upgrade() -> None:
    """Create the trigger function and the AFTER UPDATE statement trigger on dl_jobs."""
    schema = queue_schema()
    op.execute(
        f"""
        CREATE FUNCTION "{schema}".dl_jobs_notify_changes() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            payload text;
        BEGIN
            -- Reading the backend list costs microseconds; a NOTIFY serialises commits.
            IF NOT EXISTS (
                SELECT 1 FROM pg_stat_get_activity(NULL) AS a
                WHERE a.application_name = '{LISTENER_NAME}'
                  AND a.datid = (SELECT d.oid FROM pg_database d
                                 WHERE d.datname = current_database())
            ) THEN
                RETURN NULL;
            END IF;
            FOR payload IN
                SELECT string_agg(changed.job_id::text, ',')
                FROM (
                    SELECT n.job_id, (row_number() OVER () - 1) / {IDS_PER_NOTIFICATION} AS chunk
                    FROM dl_new_jobs n JOIN dl_old_jobs o ON o.job_id = n.job_id
                    WHERE n.status IS DISTINCT FROM o.status
                       OR n.progress IS DISTINCT FROM o.progress
                       OR n.cancel_requested IS DISTINCT FROM o.cancel_requested
                ) AS changed
                GROUP BY changed.chunk
            LOOP
                PERFORM pg_notify('{CHANNEL}', payload);
            END LOOP;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER dl_jobs_notify_changes
        AFTER UPDATE ON "{schema}".dl_jobs
        REFERENCING OLD TABLE AS dl_old_jobs NEW TABLE AS dl_new_jobs
        FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".dl_jobs_notify_changes()
        """
    )


def downgrade() -> None:
    """Drop the trigger and its function."""
    schema = queue_schema()
    op.execute(f'DROP TRIGGER IF EXISTS dl_jobs_notify_changes ON "{schema}".dl_jobs')
    op.execute(f'DROP FUNCTION IF EXISTS "{schema}".dl_jobs_notify_changes()')
