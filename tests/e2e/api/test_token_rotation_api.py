"""Token rotation without a restart, as docs/security.md tells it, against `python -m app serve`.

The procedure, step by step, on one running server with two API processes (APP_WORKERS=2):
add the new token to API_TOKENS_FILE, both are valid, clients move, the old one is removed and
refused. The processes are the same ones at the end. Then a broken file keeps the last good
tokens (and never opens the API), and SIGHUP re-reads the file at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.api_servers import ApiServer, api_server_on_fresh_database, server_env
from tests.support.databases import TestServer as PgServer
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until

OLD_TOKEN = "old-token-" + uuid.uuid4().hex
NEW_TOKEN = "new-token-" + uuid.uuid4().hex
ROUTE = "/info"  # needs the read scope, and no database
# Each request opens its own connection, so the kernel spreads them over both processes;
# this many answers in a row have come from each of them (2 ** -20 odds otherwise).
IN_A_ROW = 20
NOT_RELOADED = "API_TOKENS_FILE not reloaded"


def token(name: str, secret: str) -> dict[str, object]:
    """One entry of the token file."""
    return {"name": name, "token": secret, "scopes": ["read"]}


def write_tokens(path: Path, content: object) -> None:
    """Replace the file at once, as the procedure says (write a new file, rename it over)."""
    staging = path.with_suffix(".tmp")
    staging.write_text(content if isinstance(content, str) else json.dumps(content))
    os.replace(staging, path)


async def status_of(base_url: str, secret: str) -> int:
    """The status of one request on a fresh connection (to whichever process accepts it)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        response = await client.get(ROUTE, headers=headers)
        return response.status_code


async def always(base_url: str, secret: str, status: int) -> bool:
    """`status` for IN_A_ROW requests in a row."""
    for _ in range(IN_A_ROW):
        if await status_of(base_url, secret) != status:
            return False
    return True


def child_pids(pid: int) -> set[int]:
    """The processes whose parent is `pid` (uvicorn's API processes under its supervisor)."""
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.add(int(entry.name))
    return children


@pytest.fixture
async def token_file(tmp_path: Path) -> Path:
    """API_TOKENS_FILE holding only the old token."""
    path = tmp_path / "tokens.json"
    write_tokens(path, [token("etl-old", OLD_TOKEN)])
    return path


@pytest.fixture
async def two_process_server(
    pg_server: PgServer, template_db: str, tmp_path: Path, token_file: Path
) -> AsyncIterator[ApiServer]:
    """`python -m app serve` with two API processes reading `token_file`."""
    env = {"API_TOKENS_FILE": str(token_file), "APP_WORKERS": "2"}
    async with api_server_on_fresh_database(
        pg_server, template_db, tmp_path, prefix="dl_rotate", extra_env=env
    ) as server:
        await wait_until(
            lambda: len(child_pids(server.process.pid)) >= 2,
            timeout=30,
            what="two API processes",
            diagnostics=server.log_tail,
        )
        yield server


async def test_token_rotation_procedure_without_restart(
    two_process_server: ApiServer, token_file: Path
) -> None:
    server = two_process_server
    url = server.base_url
    processes = child_pids(server.process.pid)
    assert await always(url, OLD_TOKEN, 200)
    assert await always(url, NEW_TOKEN, 401)

    # 1. Add the new token next to the old one.
    write_tokens(token_file, [token("etl-old", OLD_TOKEN), token("etl-new", NEW_TOKEN)])
    # 2. Both are valid, in every process.
    await wait_until(
        lambda: always(url, NEW_TOKEN, 200),
        timeout=15,
        what="the new token accepted by every process",
        diagnostics=server.log_tail,
    )
    assert await always(url, OLD_TOKEN, 200), "the old token stays valid meanwhile"
    # 3. Clients move to the new token (nothing for the server to do).
    # 4. Remove the old token.
    write_tokens(token_file, [token("etl-new", NEW_TOKEN)])
    # 5. The old one is refused everywhere; the new one keeps working.
    await wait_until(
        lambda: always(url, OLD_TOKEN, 401),
        timeout=15,
        what="the old token refused by every process",
        diagnostics=server.log_tail,
    )
    assert await always(url, NEW_TOKEN, 200)

    assert server.process.poll() is None
    assert child_pids(server.process.pid) == processes, "no API process was restarted"
    assert "API tokens reloaded from" in server.log_path.read_text()


@pytest.mark.parametrize(
    "broken",
    [
        "{not json",
        "[]",  # no token at all would open the API
        json.dumps([{"name": "short", "token": "too-short", "scopes": ["read"]}]),
    ],
    ids=["not-json", "empty-list", "invalid-token"],
)
async def test_a_broken_token_file_keeps_the_last_good_tokens(
    two_process_server: ApiServer, token_file: Path, broken: str
) -> None:
    server = two_process_server
    url = server.base_url
    write_tokens(token_file, broken)

    async def noticed() -> bool:
        await status_of(url, OLD_TOKEN)  # a process looks at the file on a request
        return NOT_RELOADED in server.log_path.read_text()

    await wait_until(
        noticed,
        timeout=15,
        what="the bad file to be noticed",
        diagnostics=server.log_tail,
    )
    for _ in range(3):  # several looks at the same bad file
        assert await always(url, OLD_TOKEN, 200), "the last good tokens stay"
        assert await always(url, "", 401), "the API never opens (no token)"
        assert await always(url, "too-short", 401)
    log = server.log_path.read_text()
    assert 1 <= log.count(NOT_RELOADED) <= 2, "one error line per process and bad version"
    assert OLD_TOKEN not in log
    write_tokens(token_file, [token("etl-new", NEW_TOKEN)])  # fixed: picked up again
    await wait_until(
        lambda: always(url, NEW_TOKEN, 200),
        timeout=15,
        what="the fixed file to be read",
        diagnostics=server.log_tail,
    )
    assert await always(url, OLD_TOKEN, 401)


async def test_sighup_rereads_the_token_file_at_once(
    pg_server: PgServer, template_db: str, tmp_path: Path, token_file: Path
) -> None:
    """With the change check off (API_TOKENS_FILE_CHECK_SEC=0) only SIGHUP reloads."""
    env = {"API_TOKENS_FILE": str(token_file), "API_TOKENS_FILE_CHECK_SEC": "0"}
    async with api_server_on_fresh_database(
        pg_server, template_db, tmp_path, prefix="dl_sighup", extra_env=env
    ) as server:
        write_tokens(token_file, [token("etl-new", NEW_TOKEN)])
        assert await always(server.base_url, NEW_TOKEN, 401), "no reload without SIGHUP"
        server.process.send_signal(signal.SIGHUP)
        await wait_until(
            lambda: always(server.base_url, NEW_TOKEN, 200),
            timeout=10,
            what="the new token after SIGHUP",
            diagnostics=server.log_tail,
        )
        assert await always(server.base_url, OLD_TOKEN, 401)
        assert server.process.poll() is None, "SIGHUP did not stop the server"


async def test_serve_refuses_an_invalid_token_file_at_start(tmp_path: Path) -> None:
    """At start there are no good tokens to keep: a bad file stops `serve` with one line."""
    bad = tmp_path / "tokens.json"
    bad.write_text("[]")
    env = {
        **server_env("postgresql://postgres@127.0.0.1:1/nowhere", 1),
        "API_TOKENS_FILE": str(bad),
    }
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"invalid API_TOKENS_FILE: {bad} lists no token" in done.stderr
