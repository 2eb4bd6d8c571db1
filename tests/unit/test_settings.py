"""load_settings(): defaults, DSN composition, WORKERS_JSON, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from app.settings import QueueConfig, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the caller's environment or a `.env` file."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


def test_load_settings_defaults_match_the_spec() -> None:
    settings = load_settings()

    assert settings.app_port == 8081
    assert settings.dl_heartbeat_sec == 10
    assert settings.dl_default_lease_ttl_sec == 60
    assert settings.dl_reaper_period_sec == 10
    assert settings.dl_claim_backoff_sec == 15
    assert settings.pg_schema_queue == "public"
    assert settings.workers_json == [QueueConfig(queue="etl.default", concurrency=2)]
    assert settings.has_database is False


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:secret@db.example:6543/jobs",
        "postgresql+asyncpg://alice:secret@db.example:6543/jobs",
        "postgres://alice:secret@db.example:6543/jobs",
    ],
)
def test_load_settings_database_url_spellings_give_one_dsn(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)

    settings = load_settings()

    assert settings.has_database is True
    assert settings.asyncpg_dsn == "postgresql://alice:secret@db.example:6543/jobs"
    assert settings.sqlalchemy_url == "postgresql+asyncpg://alice:secret@db.example:6543/jobs"


def test_load_settings_pg_parts_compose_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_HOST", "db.internal")
    monkeypatch.setenv("PG_PORT", "6543")
    monkeypatch.setenv("PG_USER", "loader")
    monkeypatch.setenv("PG_PASSWORD", "pa ss")
    monkeypatch.setenv("PG_DATABASE", "jobs")

    settings = load_settings()

    assert settings.has_database is True
    assert settings.asyncpg_dsn == "postgresql://loader:pa%20ss@db.internal:6543/jobs"
    assert settings.sqlalchemy_url == "postgresql+asyncpg://loader:pa%20ss@db.internal:6543/jobs"


def test_load_settings_password_with_special_characters_is_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "p@ss:w/rd?#%&="
    monkeypatch.setenv("PG_HOST", "db.internal")
    monkeypatch.setenv("PG_USER", "us@er")
    monkeypatch.setenv("PG_PASSWORD", password)

    dsn = load_settings().asyncpg_dsn
    parts = urlsplit(dsn)

    assert parts.hostname == "db.internal"
    assert parts.port == 5432
    assert parts.path == "/dataloader"
    assert parts.username is not None
    assert parts.password is not None
    assert unquote(parts.username) == "us@er"
    assert unquote(parts.password) == password


def test_load_settings_without_database_has_no_dsn() -> None:
    settings = load_settings()

    with pytest.raises(SettingsError, match="DATABASE_URL"):
        _ = settings.asyncpg_dsn


def test_load_settings_workers_json_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "WORKERS_JSON", '[{"queue": "etl.fast", "concurrency": 8}, {"queue": "etl.slow"}]'
    )

    settings = load_settings()

    assert settings.workers_json == [
        QueueConfig(queue="etl.fast", concurrency=8),
        QueueConfig(queue="etl.slow", concurrency=1),
    ]


def test_load_settings_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_SCHEMA_QUEUE", "fromenv")

    settings = load_settings(pg_schema_queue="jobqueue", dl_heartbeat_sec=2.5)

    assert settings.pg_schema_queue == "jobqueue"
    assert settings.dl_heartbeat_sec == 2.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APP_PORT", "x"),
        ("APP_PORT", "0"),
        ("APP_PORT", "70000"),
        ("APP_MAX_BODY_BYTES", "10"),
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "http://db/jobs"),
        ("PG_PORT", "0"),
        ("PG_POOL_SIZE", "0"),
        ("PG_SCHEMA_QUEUE", "Job-Queue"),
        ("PG_SCHEMA_QUEUE", "1queue"),
        ("PG_SCHEMA_QUEUE", 'x"; DROP SCHEMA public; --'),
        ("WORKERS_JSON", "not json"),
        ("WORKERS_JSON", '{"queue": "etl.default"}'),
        ("WORKERS_JSON", "[]"),
        ("WORKERS_JSON", '[{"queue": "a"}, {"queue": "a"}]'),
        ("WORKERS_JSON", '[{"queue": "a", "concurrency": -1}]'),
        ("WORKERS_JSON", '[{"queue": "has space"}]'),
        ("DL_PIPELINE_MODULES", "[not json"),
        ("DL_HEARTBEAT_SEC", "abc"),
        ("DL_HEARTBEAT_SEC", "0"),
        ("DL_HEARTBEAT_SEC", "-1"),
        ("DL_DEFAULT_LEASE_TTL_SEC", "0"),
        ("DL_DEFAULT_LEASE_TTL_SEC", "86401"),
        ("DL_DEFAULT_LEASE_TTL_SEC", "1.5"),
        ("DL_REAPER_PERIOD_SEC", "0"),
        ("DL_CLAIM_BACKOFF_SEC", "-1"),
        ("DL_RETRY_BACKOFF_SEC", "soon"),
        ("DL_RETRY_JITTER", "2"),
        ("DL_SHUTDOWN_TIMEOUT_SEC", "-5"),
    ],
)
def test_load_settings_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert variable in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("pkg.pipelines", ["pkg.pipelines"]),
        ("a.one, b.two", ["a.one", "b.two"]),
        ('["a.one", "b.two"]', ["a.one", "b.two"]),
        ("", []),
    ],
)
def test_load_settings_pipeline_modules_accept_commas_and_json(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("DL_PIPELINE_MODULES", raw)
    assert load_settings().dl_pipeline_modules == expected
