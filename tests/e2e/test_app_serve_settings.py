"""`python -m app serve` with a bad setting: exit status 2 and one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.devserver.embedded_postgres import free_port
from app.settings import Settings
from tests.support.paths import PROJECT_ROOT


def _run_app(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m app serve` with a clean settings environment plus `env_overrides`."""
    env = {
        key: value for key, value in os.environ.items() if key.lower() not in Settings.model_fields
    }
    env.update(
        {
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
            "APP_HOST": "127.0.0.1",
            "APP_PORT": str(free_port()),
            **env_overrides,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DL_HEARTBEAT_SEC", "abc"), ("DATABASE_URL", "mysql://x")],
)
def test_app_cli_bad_setting_exits_2_with_one_line(variable: str, value: str) -> None:
    result = _run_app({variable: value})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
