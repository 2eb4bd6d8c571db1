"""Access control against a real API process started with API_TOKENS_JSON.

Every route in the OpenAPI document (and /metrics) answers 401 without a token or with a
bad one, 403 to a token lacking the route's scope, and neither to one that has it. The
start-up refusal off loopback, the open-mode warning, and a grep for every secret in logs,
events, /info and /metrics after a real run with a worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from app.devserver.embedded_postgres import free_port
from tests.support.api_servers import (
    ApiServer,
    api_server_on_fresh_database,
    server_env,
    start_api_server,
    stop_api_server,
)
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name
from tests.support.local_servers import LOOPBACK_CALLBACKS
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until
from tests.support.workers import worker_fleet

READ_TOKEN = "read-token-" + uuid.uuid4().hex
WRITE_TOKEN = "write-token-" + uuid.uuid4().hex
ADMIN_TOKEN = "admin-token-" + uuid.uuid4().hex
BAD_TOKEN = "nope-token-" + uuid.uuid4().hex
TOKENS_JSON = json.dumps(
    [
        {"name": "reader", "token": READ_TOKEN, "scopes": ["read"]},
        {"name": "writer", "token": WRITE_TOKEN, "scopes": ["write"]},
        {"name": "boss", "token": ADMIN_TOKEN, "scopes": ["admin"]},
    ]
)
TOKEN_BY_SCOPE = {"read": READ_TOKEN, "write": WRITE_TOKEN, "admin": ADMIN_TOKEN}
WEAKER = {"write": "read", "admin": "write"}
OPEN_MESSAGE = "API is open: no API_TOKENS_JSON, bound to loopback only"
# Path parameters: ids nothing exists for, a queue and schedule only this module uses.
PATH_VALUES = {
    "job_id": str(uuid.uuid4()),
    "workflow_id": str(uuid.uuid4()),
    "batch_id": str(uuid.uuid4()),
    "queue": "auth.only",
    "name": "auth-only",
}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _expected_scope(method: str, path: str) -> str:
    """The rule as documented, written out independently of the code."""
    if path in ("/health", "/ready"):
        return "open"
    if method == "DELETE" or path.endswith(("/pause", "/resume")):
        return "admin"
    if method == "PUT" and path.endswith(("/limits", "/fairness")):
        return "admin"
    return "read" if method in ("GET", "HEAD") else "write"


@pytest.fixture(scope="module")
async def auth_server(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """The API with three tokens (read, write, admin) on a fresh migrated database."""
    async with api_server_on_fresh_database(
        pg_server,
        template_db,
        tmp_path_factory.mktemp("api_auth"),
        prefix="dl_auth",
        extra_env={"API_TOKENS_JSON": TOKENS_JSON},
    ) as server:
        yield server


@pytest.fixture
async def auth_client(auth_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=auth_server.base_url, timeout=30) as client:
        yield client
    assert auth_server.process.poll() is None, f"API died:\n{auth_server.log_tail()}"


async def _routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """(method, concrete path) for every operation in the OpenAPI document, plus /metrics."""
    document = (await client.get("/schema/openapi.json")).json()
    routes = [("GET", "/metrics")]
    for template, operations in document["paths"].items():
        path = template
        for key, value in PATH_VALUES.items():
            path = path.replace("{" + key + "}", value)
        assert "{" not in path, f"no test value for a parameter of {template}"
        for method in operations:
            if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
                routes.append((method.upper(), path))
    return routes


async def _call(
    client: httpx.AsyncClient, method: str, path: str, token: str | None
) -> httpx.Response:
    headers = _bearer(token) if token else {}
    body = {} if method in ("POST", "PATCH", "PUT") else None
    return await client.request(method, path, headers=headers, json=body)


async def test_auth_every_route_needs_its_scope(
    auth_client: httpx.AsyncClient, auth_server: ApiServer
) -> None:
    routes = await _routes(auth_client)
    assert len(routes) > 20, routes
    for method, path in routes:
        needed = _expected_scope(method, path)
        where = f"{method} {path}"
        if needed == "open":
            assert (await _call(auth_client, method, path, None)).status_code == 200, where
            continue
        for token in (None, BAD_TOKEN, READ_TOKEN[:-1], "Basic abc"):
            if token == "Basic abc":
                response = await auth_client.request(
                    method, path, headers={"Authorization": "Basic abc"}
                )
            else:
                response = await _call(auth_client, method, path, token)
            assert response.status_code == 401, (where, token is None, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer"), where
            body = response.json()
            assert body["status_code"] == 401, where
            assert "token" in body["detail"], where
        if needed in WEAKER:
            weaker = WEAKER[needed]
            response = await _call(auth_client, method, path, TOKEN_BY_SCOPE[weaker])
            assert response.status_code == 403, (where, weaker, response.text)
            assert needed in response.json()["detail"], where
        for scope in ("read", "write", "admin"):
            if ["read", "write", "admin"].index(scope) < ["read", "write", "admin"].index(needed):
                continue
            response = await _call(auth_client, method, path, TOKEN_BY_SCOPE[scope])
            assert response.status_code not in (401, 403), (where, scope, response.text)
    log = auth_server.log_path.read_text(errors="replace")
    for token in (READ_TOKEN, WRITE_TOKEN, ADMIN_TOKEN, BAD_TOKEN):
        assert token not in log


async def test_auth_probes_schema_and_dashboard_are_open(auth_client: httpx.AsyncClient) -> None:
    for path in (
        "/health",
        "/ready",
        "/schema/openapi.json",
        "/dashboard",
        "/dashboard/static/dashboard.js",
    ):
        response = await auth_client.get(path)
        assert response.status_code == 200, (path, response.text[:200])


async def test_auth_openapi_declares_the_bearer_scheme(auth_client: httpx.AsyncClient) -> None:
    document = (await auth_client.get("/schema/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["BearerToken"]["description"],
    }
    assert document["security"] == [{"BearerToken": []}]
    assert document["paths"]["/health"]["get"]["security"] == [{}]


async def test_auth_logs_the_token_name(
    auth_client: httpx.AsyncClient, auth_server: ApiServer
) -> None:
    marker = f"/api/v1/jobs/{uuid.uuid4()}"
    response = await auth_client.get(marker, headers=_bearer(READ_TOKEN))
    assert response.status_code == 404

    def logged() -> list[dict[str, object]]:
        lines = auth_server.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if marker in line and line.startswith("{")]

    records = await wait_until(logged, timeout=10, what="the access log line")
    assert records[0].get("api_client") == "reader", records
    assert READ_TOKEN not in auth_server.log_path.read_text(errors="replace")


def _serve(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_auth_serve_refuses_open_api_off_loopback() -> None:
    env = server_env("postgresql://postgres@127.0.0.1:1/nowhere", free_port())
    env["APP_HOST"] = "0.0.0.0"
    result = _serve(env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "APP_HOST=0.0.0.0" in lines[0]
    assert "API_TOKENS_JSON" in lines[0]


async def test_auth_open_mode_on_loopback_warns(api_server: ApiServer) -> None:
    def warned() -> bool:
        return OPEN_MESSAGE in api_server.log_path.read_text(errors="replace")

    await wait_until(warned, timeout=10, what="the open-API warning")
    async with httpx.AsyncClient(base_url=api_server.base_url, timeout=30) as client:
        assert (await client.get("/api/v1/queues")).status_code == 200


def _with_password(dsn: str, password: str) -> tuple[str, str]:
    """The DSN with a password (trust auth ignores it), and the password it carries."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn, parts.password
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), password


async def test_auth_secrets_never_leak(
    pg_server: PgServer, template_db: str, tmp_path: Path
) -> None:
    """After a run with every kind of secret configured, none appears anywhere it should not.

    Job args are stored as the client sent them (dl_jobs.args is the job's input, returned
    by the API to readers), so that one column is left out; logs and events mask them.
    """
    name = unique_name("dl_secrets")
    plain_dsn = await create_database(pg_server, name, template=template_db)
    dsn, db_password = _with_password(plain_dsn, "dbpw-" + uuid.uuid4().hex)
    smtp_password = "smtppw-" + uuid.uuid4().hex
    amqp_password = "amqppw-" + uuid.uuid4().hex
    callback_secret = "cbsecret-" + uuid.uuid4().hex
    arg_password = "argpw-" + uuid.uuid4().hex
    arg_token = "argtoken-" + uuid.uuid4().hex
    arg_pin = "argpin-" + uuid.uuid4().hex
    hook_url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: the job fails
    secrets = {
        "database password": db_password,
        "read token": READ_TOKEN,
        "write token": WRITE_TOKEN,
        "admin token": ADMIN_TOKEN,
        "smtp password": smtp_password,
        "amqp password": amqp_password,
        "callback header": callback_secret,
        "arg password": arg_password,
        "arg api_token": arg_token,
        "arg with a masked key": arg_pin,
    }
    env = {
        "API_TOKENS_JSON": TOKENS_JSON,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(free_port()),
        "SMTP_USERNAME": "mailer",
        "SMTP_PASSWORD": smtp_password,
        "SMTP_FROM": "dl@example.org",
        "RABBITMQ_URL": f"amqp://guest:{amqp_password}@127.0.0.1:{free_port()}/",
        "HTTP_CALLBACK_CREDENTIALS_JSON": json.dumps(
            {
                "partner": {
                    "headers": {"Authorization": f"Bearer {callback_secret}"},
                    "urls": [hook_url],
                }
            }
        ),
        **LOOPBACK_CALLBACKS,
        "DL_LOG_MASK_KEYS": "customer_pin",
        "LOG_LEVEL": "DEBUG",
    }
    api_env = {k: v for k, v in env.items() if k != "LOG_LEVEL"}
    server = await start_api_server(dsn, tmp_path / "api.log", extra_env=api_env)
    try:
        with worker_fleet(PROJECT_ROOT, dsn, tmp_path / "workers", env=env) as fleet:
            await fleet.start_ready("secrets-worker")
            args = {"password": arg_password, "api_token": arg_token, "customer_pin": arg_pin}
            jobs = [
                {"task": "noop", "args": {**args, "steps": 2, "sleep": 0.1}},
                {"task": "noop", "args": {**args, "fail": True}},
                {
                    "task": "http.callback",
                    "args": {
                        "url": hook_url,
                        "credentials": "partner",
                        "timeout_sec": 2,
                    },
                },
            ]
            job_ids = []
            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=30, headers=_bearer(WRITE_TOKEN)
            ) as client:
                for index, job in enumerate(jobs):
                    response = await client.post(
                        "/api/v1/jobs/trigger",
                        json={
                            "queue": "etl.default",
                            "lock_key": f"secrets-{index}",
                            "max_attempts": 1,
                            **job,
                        },
                    )
                    assert response.status_code == 200, response.text
                    job_ids.append(response.json()["job_id"])

                async def finished() -> bool:
                    for job_id in job_ids:
                        status = (await client.get(f"/api/v1/jobs/{job_id}")).json()["status"]
                        if status not in ("succeeded", "failed", "canceled", "lost"):
                            return False
                    return True

                await wait_until(finished, timeout=60, what="jobs", diagnostics=fleet.diagnostics)
                # A refused write echoes nothing secret either.
                response = await client.post(
                    "/api/v1/jobs/trigger",
                    json={"queue": "etl.default", "task": "nope", "lock_key": "x", "args": args},
                )
                assert response.status_code == 400
                answers = {"refused trigger": response.text}
                for path in ("/info", "/metrics", "/api/v1/queues"):
                    answers[path] = (await client.get(path, headers=_bearer(ADMIN_TOKEN))).text
                for job_id in job_ids:
                    answers[f"events {job_id}"] = (
                        await client.get(f"/api/v1/jobs/{job_id}/events")
                    ).text
        connection = await asyncpg.connect(plain_dsn)
        try:
            stored_args = await connection.fetchval(
                "SELECT string_agg(args::text, ' ') FROM dl_jobs"
            )
            assert arg_password in stored_args  # stored as sent: the grep below can see it
            job_rows = await connection.fetch("SELECT (to_jsonb(j) - 'args')::text FROM dl_jobs j")
            event_rows = await connection.fetch("SELECT to_jsonb(e)::text FROM dl_job_events e")
        finally:
            await connection.close()
    finally:
        stop_api_server(server)
    places = {
        "API log": server.log_path.read_text(errors="replace"),
        **{f"worker log {w.worker_id}": w.log() for w in fleet.workers},
        "dl_jobs rows (without args)": "\n".join(row[0] for row in job_rows),
        "dl_job_events rows": "\n".join(row[0] for row in event_rows),
        **answers,
    }
    assert len(event_rows) >= 6
    leaks = [
        f"{what} in {place}"
        for what, secret in secrets.items()
        for place, text in places.items()
        if secret in text
    ]
    assert leaks == [], leaks
    await drop_database(pg_server, name)
