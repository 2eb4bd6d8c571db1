"""Job specs for tests: valid by default, any field overridden."""

from __future__ import annotations

from app.domain.spec import JobCreate


def echo_spec(**overrides: object) -> JobCreate:
    """A valid spec for the test.echo pipeline (tests/support/pipelines.py)."""
    values: dict[str, object] = {
        "queue": "etl.test",
        "task": "test.echo",
        "lock_key": "customer-1",
        "args": {"n": 1},
    }
    values.update(overrides)
    return JobCreate(**values)  # type: ignore[arg-type]
