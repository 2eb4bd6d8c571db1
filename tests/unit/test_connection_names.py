"""The connection plan's names and pool sizes, without a database."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import connections
from app.db.job_changes import LISTENER_APPLICATION_NAME
from app.settings import Settings, load_settings

MIGRATION_0006 = (
    Path(__file__).resolve().parents[2] / "migrations/versions/0006_job_change_notify.py"
)


def settings(**overrides: object) -> Settings:
    """Settings aimed at a database that is never contacted (engines connect lazily)."""
    return load_settings(database_url="postgresql://u@127.0.0.1:1/db", **overrides)


def migration_0006() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0006", MIGRATION_0006)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pool_shape(engine: AsyncEngine) -> tuple[int, int]:
    """(pool size, max overflow) of an engine's QueuePool."""
    pool = engine.sync_engine.pool
    return pool.size(), pool._max_overflow  # type: ignore[attr-defined]


def test_connection_plan_names_say_dataloader_purpose_and_worker_id() -> None:
    assert connections.application_name("api pool") == "dataloader api pool"
    assert connections.application_name("lock session", "w1") == "dataloader lock session w1"


def test_connection_plan_names_fit_what_postgresql_keeps() -> None:
    name = connections.application_name("finish writer", "host-" + "x" * 80)

    assert len(name) == 63
    assert name.startswith("dataloader finish writer host-")


def test_connection_plan_job_watch_name_is_the_one_the_trigger_matches() -> None:
    assert LISTENER_APPLICATION_NAME == "dataloader job watch"
    assert connections.application_name(connections.JOB_WATCH) == LISTENER_APPLICATION_NAME
    assert migration_0006().LISTENER_NAME == LISTENER_APPLICATION_NAME


@pytest.mark.parametrize("purpose", connections.PURPOSES)
def test_connection_plan_recognises_each_of_its_names(purpose: str) -> None:
    assert connections.is_planned(connections.application_name(purpose))
    assert connections.is_planned(connections.application_name(purpose, "w-7"))


@pytest.mark.parametrize("name", ["", "psql", "dataloader", "dataloader lock", "dataloader x"])
def test_connection_plan_rejects_other_names(name: str) -> None:
    assert not connections.is_planned(name)


async def test_connection_plan_pools_keep_their_sizes() -> None:
    configured = settings(pg_pool_size=7, pg_max_overflow=3, dl_worker_pool_size=2)
    engines = {
        "api": connections.api_pool(configured),
        "worker": connections.worker_pool(configured, "w1"),
        "api default": connections.api_pool(settings()),
        "worker default": connections.worker_pool(settings(), "w1"),
    }
    try:
        # The worker's pool never overflows: its size is its share of the budget.
        assert {purpose: pool_shape(engine) for purpose, engine in engines.items()} == {
            "api": (7, 3),
            "worker": (2, 0),
            "api default": (4, 0),
            "worker default": (1, 0),
        }
    finally:
        for engine in engines.values():
            await engine.dispose()
