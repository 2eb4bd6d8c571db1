"""The suite's plugins; tests/README.md says which tier a test belongs to and why."""

from __future__ import annotations

pytest_plugins = [
    "tests.support.tiers",  # marks every test with its folder's tier
    "tests.support.pipeline_registry",  # the pipelines this process can enqueue
    "tests.support.database_fixtures",  # pg_server, template_db, database_dsn, settings, engine
    "tests.support.worker_fixtures",  # jobs_db, fleet
]
