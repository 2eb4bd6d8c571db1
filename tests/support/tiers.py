"""Plugin: every test carries the marker of its tier, and its tier is its folder.

The one rule: the folder directly under tests/ names the tier (tests/unit -> `unit`,
tests/e2e/api -> `e2e`). The markers are registered in pyproject.toml and pytest runs with
--strict-markers, so a tier folder without a registered marker fails at collection, and so
does a test file outside the tier folders. Select tiers with `-m`, e.g.
`pytest -m "unit or integration"`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "integration", "e2e", "faults", "browser")
TESTS_DIR = Path(__file__).resolve().parents[1]


def tier_of(path: Path) -> str:
    """The tier of the test file at `path`: the first folder under tests/."""
    try:
        parts = path.resolve().relative_to(TESTS_DIR).parts
    except ValueError:
        parts = ()
    if len(parts) < 2 or parts[0] not in TIERS:
        raise pytest.UsageError(
            f"{path}: a test file belongs in one tier folder, tests/<{'|'.join(TIERS)}>/"
        )
    return parts[0]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each collected test with its tier."""
    for item in items:
        item.add_marker(tier_of(item.path))
