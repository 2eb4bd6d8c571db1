"""The embedded PostgreSQL's password file and pg_hba.conf (app/devserver/embedded_auth.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from app.db.server_admin import set_password_statement
from app.devserver.embedded_auth import (
    hba_conf,
    new_password,
    read_password,
    write_hba_conf,
    write_password_file,
)


def _rules(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


def test_hba_conf_takes_only_scram_over_tcp_from_loopback() -> None:
    assert _rules(hba_conf()) == [["host", "all", "all", "127.0.0.1/32", "scram-sha-256"]]


def test_hba_conf_client_networks_need_the_password_too() -> None:
    rules = _rules(hba_conf(["10.200.0.0/24"]))
    assert rules[1] == ["host", "all", "all", "10.200.0.0/24", "scram-sha-256"]
    assert all(rule[0] == "host" and rule[-1] == "scram-sha-256" for rule in rules)


def test_write_hba_conf_replaces_a_trusting_file(tmp_path: Path) -> None:
    (tmp_path / "pg_hba.conf").write_text("local all all trust\nhost all all 0.0.0.0/0 trust\n")
    write_hba_conf(tmp_path)
    assert (tmp_path / "pg_hba.conf").read_text() == hba_conf()
    assert sorted(os.listdir(tmp_path)) == ["pg_hba.conf"]


def test_password_file_is_created_owner_only_even_with_an_open_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        write_password_file(tmp_path / "pw", "secret-value")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "pw").stat().st_mode) == 0o600
    assert read_password(tmp_path / "pw") == "secret-value"


def test_password_file_is_never_overwritten_or_followed(tmp_path: Path) -> None:
    write_password_file(tmp_path / "pw", "first")
    with pytest.raises(FileExistsError):
        write_password_file(tmp_path / "pw", "second")
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        write_password_file(tmp_path / "link", "third")
    assert (tmp_path / "elsewhere").read_text() == ""


def test_new_password_is_strong_and_needs_no_quoting() -> None:
    passwords = {new_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) >= 43  # 32 random bytes
        assert password.replace("-", "").replace("_", "").isalnum()


def test_set_password_statement_quotes_role_and_password() -> None:
    assert set_password_statement('o"dd', "it's") == "ALTER ROLE \"o\"\"dd\" PASSWORD 'it''s'"
