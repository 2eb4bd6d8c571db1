"""Reading the JSON log lines the API and the workers write (LOG_FORMAT=json, the default)."""

from __future__ import annotations

import json
from typing import Any


def log_records(text: str) -> list[dict[str, Any]]:
    """Every line of `text` that is a JSON object; stray output (tracebacks printed by
    a library, pgq's own banner) is skipped."""
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def non_json_lines(text: str) -> list[str]:
    """Lines of `text` that are not JSON objects (blank lines aside)."""
    return [line for line in text.splitlines() if line.strip() and not _is_object(line)]


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False
