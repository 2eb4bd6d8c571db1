"""Fixtures local to the fault scenarios (jobs_db and fleet come from tests.support plugins)."""

from __future__ import annotations

import pytest

from tests.faults.checks import FIGURES_FILE


@pytest.fixture(scope="session", autouse=True)
def _fresh_figures_file() -> None:
    """test-output/faults.txt holds this session's figures only."""
    FIGURES_FILE.unlink(missing_ok=True)
