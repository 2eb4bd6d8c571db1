"""docs/configuration.md's settings table is the one `python -m app.settings_doc` renders."""

from __future__ import annotations

import pytest

from app.settings import Settings
from app.settings_doc import (
    BEGIN,
    DOC_PATH,
    END,
    UndocumentedSettingError,
    render_document,
    settings_table,
)


def test_configuration_doc_matches_the_settings_class() -> None:
    current = DOC_PATH.read_text()

    assert render_document(current) == current, (
        "docs/configuration.md is stale: run `python -m app.settings_doc`"
    )


def test_configuration_doc_names_every_setting_once() -> None:
    table = DOC_PATH.read_text().partition(BEGIN)[2].partition(END)[0]

    for name in Settings.model_fields:
        assert table.count(f"| `{name.upper()}` |") == 1, name


def test_configuration_doc_refuses_a_setting_without_a_docstring() -> None:
    class MoreSettings(Settings):
        """Settings with one field added and left undocumented."""

        dl_new_knob: int = 3

    with pytest.raises(UndocumentedSettingError, match="DL_NEW_KNOB"):
        settings_table(MoreSettings)


def test_configuration_doc_shows_defaults_and_bounds_from_the_class() -> None:
    rows = {row.split(" | ")[0]: row for row in settings_table().splitlines()}

    assert rows["| `APP_PORT`"].startswith("| `APP_PORT` | `8081` | integer, 1 to 65535 |")
    assert "| unset | text (secret) |" in rows["| `RABBITMQ_URL`"]
    assert "`json`, `console`" in rows["| `LOG_FORMAT`"]
    assert '`[{"queue": "etl.default", "concurrency": 2}]`' in rows["| `WORKERS_JSON`"]
