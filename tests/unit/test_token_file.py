"""app.http.token_file and the guard over it: re-read on change, keep the last good tokens."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from app.cli import invalid_token_file, refuse_open_exposure
from app.http.auth import TokenGuard
from app.http.token_file import TokenFile, TokenFileError, read_token_file
from app.settings import SettingsError, load_settings

OLD = "old-secret-0123456789"
NEW = "new-secret-0123456789"


def _write(path: Path, entries: object) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    os.replace(staging, path)


def _entry(name: str, secret: str) -> dict[str, object]:
    return {"name": name, "token": secret, "scopes": ["read"]}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "tokens.json"
    _write(file, [_entry("old", OLD)])
    return file


def test_a_changed_file_is_read_on_the_next_look(path: Path) -> None:
    guard = TokenGuard((), TokenFile(path, check_interval_sec=0.000001))
    assert guard.identify(OLD) == ("old", frozenset({"read"}))
    _write(path, [_entry("old", OLD), _entry("new", NEW)])
    guard.refresh()
    assert guard.identify(NEW) == ("new", frozenset({"read"}))
    _write(path, [_entry("new", NEW)])
    guard.refresh()
    assert guard.identify(OLD) is None


def test_the_file_is_looked_at_no_more_than_once_per_interval(path: Path) -> None:
    guard = TokenGuard((), TokenFile(path, check_interval_sec=3600))
    _write(path, [_entry("new", NEW)])
    guard.refresh()
    assert guard.identify(NEW) is None, "not before the interval"
    guard.reload()  # SIGHUP
    assert guard.identify(NEW) is not None
    assert guard.identify(OLD) is None


@pytest.mark.parametrize(
    "broken",
    ["{not json", "[]", json.dumps([_entry("x", "short")]), json.dumps([_entry("a", OLD)] * 2)],
    ids=["not-json", "empty", "short-token", "repeated-name"],
)
def test_a_broken_file_keeps_the_last_good_tokens_and_logs_once(
    path: Path, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    guard = TokenGuard((), TokenFile(path, check_interval_sec=0.000001))
    _write(path, broken)
    with caplog.at_level(logging.ERROR, logger="app.http.auth"):
        for _ in range(5):
            guard.refresh()
    assert guard.identify(OLD) == ("old", frozenset({"read"}))
    assert guard.enabled, "a broken file never opens the API"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]


def test_a_removed_file_keeps_the_last_good_tokens(path: Path) -> None:
    guard = TokenGuard((), TokenFile(path, check_interval_sec=0.000001))
    path.unlink()
    guard.refresh()
    guard.reload()
    assert guard.identify(OLD) is not None


def test_errors_never_quote_a_secret(tmp_path: Path) -> None:
    file = tmp_path / "tokens.json"
    file.write_text(json.dumps([{"name": "bad name!", "token": OLD, "scopes": ["read"]}]))
    with pytest.raises(TokenFileError) as caught:
        read_token_file(file)
    assert OLD not in str(caught.value)
    assert "0.name" in str(caught.value)


def test_settings_take_a_file_or_a_list_not_both(path: Path) -> None:
    listed = json.dumps([_entry("old", OLD)])
    with pytest.raises(SettingsError, match="not both"):
        load_settings(api_tokens_json=listed, api_tokens_file=str(path))
    settings = load_settings(api_tokens_file=str(path), app_host="0.0.0.0")
    assert refuse_open_exposure(settings) is None
    assert invalid_token_file(settings) is None
    assert TokenGuard.from_settings(settings).enabled
    _write(path, "[]")
    assert "lists no token" in (invalid_token_file(settings) or "")
