"""pyproject.toml states what the code needs: every imported package is declared, every
console script resolves."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWN_PACKAGES = {"app", "worker", "bench", "tests", "migrations"}
# Shipped code: what `make run` (the runtime dependencies) must be enough for. bench also
# ships, with its own group; tests run with the dev group.
RUNTIME_DIRS = ("app", "worker", "migrations")


@cache
def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _normalized(match.group(1))


def _runtime() -> set[str]:
    return {_requirement_name(r) for r in _pyproject()["project"]["dependencies"]}


def _group(name: str) -> set[str]:
    """A PEP 735 dependency group, included groups expanded."""
    names: set[str] = set()
    for entry in _pyproject()["dependency-groups"][name]:
        if isinstance(entry, dict):
            names |= _group(entry["include-group"])
        else:
            names.add(_requirement_name(entry))
    return names


def _imported_modules(*dirs: str) -> dict[str, set[str]]:
    """Top-level third-party modules imported under these folders, with a file importing each."""
    found: dict[str, set[str]] = {}
    for folder in dirs:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN_PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _undeclared(dirs: tuple[str, ...], declared: set[str]) -> list[str]:
    distributions = packages_distributions()
    missing = []
    for module, files in sorted(_imported_modules(*dirs).items()):
        provided_by = {_normalized(d) for d in distributions.get(module, [])}
        if not provided_by:
            missing.append(f"{module} (not installed; imported by {sorted(files)[0]})")
        elif not provided_by & declared:
            missing.append(f"{module} from {sorted(provided_by)} ({sorted(files)[0]})")
    return missing


def test_shipped_code_imports_only_runtime_dependencies() -> None:
    assert _undeclared(RUNTIME_DIRS, _runtime()) == []


def test_bench_imports_runtime_or_bench_dependencies() -> None:
    assert _undeclared(("bench",), _runtime() | _group("bench")) == []


def test_tests_import_runtime_or_dev_dependencies() -> None:
    assert _undeclared(("tests",), _runtime() | _group("dev")) == []


def test_dev_tools_are_not_runtime_dependencies() -> None:
    tools = {"pytest", "ruff", "mypy", "import-linter", "playwright", "schemathesis", "psutil"}
    assert _runtime() & tools == set()
    assert tools <= _group("dev")


@pytest.mark.parametrize("script", sorted(_pyproject()["project"]["scripts"]))
def test_console_script_resolves(script: str) -> None:
    module_name, _, attribute = _pyproject()["project"]["scripts"][script].partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    assert callable(target)
