"""Dependencies and workflows: the `waiting` status, dl_jobs' dependency and workflow columns,
dl_job_dependencies, dl_workflows, the release trigger, dl_enqueue_workflow().

A job with depends_on is created `waiting` without a dispatch; the trigger
dl_jobs_dependents (app.db.dependency_functions) releases or cancels it when its parents
end, in the transaction that ends them. Its WHEN clause reads only has_dependents and the
status, so a job nobody depends on never calls it. dl_enqueue() is installed again with
`depends_on` and `run_after`, and dl_enqueue_workflow() (app.db.workflow_function) creates a
workflow from SQL.

New columns are nullable or have constant defaults: nothing is rewritten. The status check
is replaced NOT VALID, then validated, which reads the table without blocking writes.
uq_dl_jobs_workflow_step starts empty of entries for existing jobs, but building it reads
the table under a lock that blocks job writes; on a large live table create it beforehand
with `CREATE UNIQUE INDEX CONCURRENTLY` under the same name and definition, and this
revision finds it in place.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db import dependency_functions, workflow_function
from app.db.sql_common import qualified
from migrations.helpers import queue_schema, reinstall_dl_enqueue

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
# Kept literal: a migration must not change when the application's statuses do.
STATUSES_BEFORE = "'queued', 'running', 'succeeded', 'failed', 'canceled', 'lost'"
STATUSES = "'waiting', 'queued', 'running', 'succeeded', 'failed', 'canceled', 'lost'"


# The naming convention of app.db.models doubles the prefix of names given to op.*
# (`ck_dl_jobs_` + "ck_dl_jobs_status_valid"); raw SQL spells the name as it is stored.
STATUS_CHECK = "ck_dl_jobs_ck_dl_jobs_status_valid"


def _status_check(statuses: str) -> None:
    schema = queue_schema()
    op.drop_constraint("ck_dl_jobs_status_valid", "dl_jobs", type_="check", schema=schema)
    jobs = qualified(schema, "dl_jobs")
    op.execute(
        f"ALTER TABLE {jobs} ADD CONSTRAINT {STATUS_CHECK} CHECK (status IN ({statuses})) NOT VALID"
    )
    op.execute(f"ALTER TABLE {jobs} VALIDATE CONSTRAINT {STATUS_CHECK}")


def upgrade() -> None:
    """Add the status, columns, tables, trigger and functions."""
    schema = queue_schema()
    _status_check(STATUSES)
    op.add_column(
        "dl_jobs", sa.Column("depends_on", postgresql.ARRAY(postgresql.UUID())), schema=schema
    )
    op.add_column(
        "dl_jobs",
        sa.Column("run_after", sa.Text(), server_default=sa.text("'succeeded'"), nullable=False),
        schema=schema,
    )
    op.add_column(
        "dl_jobs",
        sa.Column("has_dependents", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema=schema,
    )
    op.add_column("dl_jobs", sa.Column("canceled_by", postgresql.UUID()), schema=schema)
    op.add_column("dl_jobs", sa.Column("workflow_id", postgresql.UUID()), schema=schema)
    op.add_column("dl_jobs", sa.Column("step_name", sa.Text()), schema=schema)
    op.create_check_constraint(
        "ck_dl_jobs_run_after_valid", "dl_jobs", "run_after IN ('succeeded', 'any')", schema=schema
    )
    # IF NOT EXISTS: an operator may have built it CONCURRENTLY ahead of the upgrade.
    op.create_index(
        "uq_dl_jobs_workflow_step",
        "dl_jobs",
        ["workflow_id", "step_name"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("workflow_id IS NOT NULL"),
        if_not_exists=True,
    )
    op.create_table(
        "dl_job_dependencies",
        sa.Column("parent_id", postgresql.UUID(), nullable=False),
        sa.Column("child_id", postgresql.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("parent_id", "child_id", name="pk_dl_job_dependencies"),
        schema=schema,
    )
    op.create_index(
        "ix_dl_job_dependencies_child_id", "dl_job_dependencies", ["child_id"], schema=schema
    )
    op.create_table(
        "dl_workflows",
        sa.Column("workflow_id", postgresql.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("step_count", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("canceled_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("workflow_id", name="pk_dl_workflows"),
        sa.CheckConstraint(
            "length(name) > 0 AND step_count >= 1", name="ck_dl_workflows_fields_valid"
        ),
        schema=schema,
    )
    op.create_index(
        "ix_dl_workflows_created_at", "dl_workflows", [sa.text("created_at DESC")], schema=schema
    )
    bind = op.get_bind()
    for statement in dependency_functions.install_statements(schema):
        bind.exec_driver_sql(statement)
    reinstall_dl_enqueue(release=18, previous=17)
    for statement in workflow_function.install_statements(schema):
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    """Drop them; waiting jobs end canceled first (the old status check has no `waiting`)."""
    schema = queue_schema()
    bind = op.get_bind()
    for statement in workflow_function.uninstall_statements(schema):
        bind.exec_driver_sql(statement)
    reinstall_dl_enqueue(release=17, previous=18)
    for statement in dependency_functions.uninstall_statements(schema):
        bind.exec_driver_sql(statement)
    op.execute(
        f"UPDATE {qualified(schema, 'dl_jobs')} SET status = 'canceled', finished_at = now(),"
        " updated_at = now(), error = 'canceled: migration 0018 was downgraded while it waited'"
        " WHERE status = 'waiting'"
    )
    op.drop_index("ix_dl_workflows_created_at", "dl_workflows", schema=schema)
    op.drop_table("dl_workflows", schema=schema)
    op.drop_index("ix_dl_job_dependencies_child_id", "dl_job_dependencies", schema=schema)
    op.drop_table("dl_job_dependencies", schema=schema)
    op.drop_index("uq_dl_jobs_workflow_step", "dl_jobs", schema=schema)
    op.drop_constraint("ck_dl_jobs_run_after_valid", "dl_jobs", type_="check", schema=schema)
    for column in (
        "step_name",
        "workflow_id",
        "canceled_by",
        "has_dependents",
        "run_after",
        "depends_on",
    ):
        op.drop_column("dl_jobs", column, schema=schema)
    _status_check(STATUSES_BEFORE)
