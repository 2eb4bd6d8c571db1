"""Hand-written hostile requests against a real server: a 4xx (or a plain 200), never a 5xx.

Deep and huge bodies, wrong content types, ids that are not UUIDs, SQL-looking and odd
unicode text in every filter and name, out-of-range numbers and timestamps. Each request is
held to the one status it gets: README.md promises a 4xx naming the field for every mistake
and a 413 over the body limit; within that, malformed or too deeply nested JSON is a 400 and a
JSON body under another Content-Type a 415.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.api_servers import ApiServer
from tests.support.waiting import wait_until

TRIGGER = "/api/v1/jobs/trigger"
BULK = "/api/v1/jobs/trigger/bulk"
JOBS = "/api/v1/jobs"
SCHEDULES = "/api/v1/schedules"
QUEUES = "/api/v1/queues"
MAX_BODY_BYTES = 1024 * 1024  # APP_MAX_BODY_BYTES' default; the fixture's server uses it

# Exact-match filters: any text a job could carry matches or not (200); NUL or too long, 400.
TEXT_FILTERS = ["queue", "task", "lock_key", "partition_key", "producer", "consumer_group"]
# Filters with a syntax (status names, RFC 3339 times): a blank value is no filter (200),
# anything else hostile is a 400.
SYNTAX_FILTERS = ["status", "created_after", "created_before", "finished_after", "finished_before"]
# A number and an opaque cursor: every hostile value is a 400, a blank one too.
STRICT_FILTERS = ["limit", "cursor"]
LIST_FILTERS = TEXT_FILTERS + SYNTAX_FILTERS + STRICT_FILTERS
JOB_ID_PATHS = ["{}", "{}/status", "{}/events", "{}/stream"]
JOB_ID_ACTIONS = ["{}/cancel", "{}/retry"]

HOSTILE_TEXT = [
    "' OR 1=1 --",
    "'; DROP TABLE dl_jobs; --",
    '"; DROP TABLE dl_jobs; --',
    "1; SELECT pg_sleep(5)",
    "%",
    "_",
    "\\",
    "😀🔥",
    "\u202eevil\u202c",  # right-to-left override
    "שלום",
    "a\x00b",
    "\x00",
    "\ufeff",
    " ",
    "x" * 5000,  # longer than any name or key may be
]
BAD_UUIDS = [
    "abc",
    "0",
    "' OR 1=1 --",
    "00000000-0000-0000-0000-00000000000g",
    "0f9c4c2e-6f51-4a8e-9d0b-2b7f1f3c9a1",
    "0f9c4c2e-6f51-4a8e-9d0b-2b7f1f3c9a100",
    "😀",
    "a" * 5000,
]
HUGE_NUMBERS: list[Any] = [-1, -(10**30), 10**30, 2**63, -(2**63) - 1, 1.5, "1e400", True]


def job_body(**overrides: object) -> dict[str, Any]:
    """A valid trigger body."""
    values: dict[str, Any] = {"queue": "fuzz", "task": "noop", "lock_key": "fuzz"}
    values.update(overrides)
    return values


def schedule_body(**overrides: object) -> dict[str, Any]:
    """A valid schedule body with a fresh name."""
    values: dict[str, Any] = {
        "name": f"fuzz-{uuid.uuid4().hex[:10]}",
        "cron": "*/5 * * * *",
        "queue": "fuzz",
        "task": "noop",
        "lock_key": "fuzz",
    }
    values.update(overrides)
    return values


# Words only PostgreSQL or asyncpg would use (the findings' `invalid input for query argument
# $2 ... out of int64 range`, `invalid byte sequence for encoding "UTF8": 0x00`).
DATABASE_WORDS = re.compile(
    r"query argument|int64|invalid byte sequence|encoding \"UTF8\"|asyncpg|sqlstate|"
    r"rejected by the database",
    re.IGNORECASE,
)


def assert_status(response: httpx.Response, status: int) -> None:
    """Exactly `status` (so never a 5xx); on a 4xx the body is the error JSON.

    Every answer carries an X-Request-ID; an error body repeats it and holds none of the
    database's words.
    """
    request = response.request
    where = f"{request.method} {str(request.url)[:300]} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:500]}"
    assert response.status_code == status, f"{where}, expected {status}: {response.text[:500]}"
    assert response.headers.get("x-request-id"), f"{where}: no X-Request-ID"
    if response.status_code >= 400:
        body = response.json()
        assert body["status_code"] == response.status_code, where
        assert isinstance(body["detail"], str), where
        assert body["request_id"] == response.headers["x-request-id"], where
        assert not DATABASE_WORDS.search(response.text), f"{where}: {response.text[:500]}"


@pytest.fixture
async def client(fuzz_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client aimed at the module's server; the server must still be up afterwards."""
    async with httpx.AsyncClient(base_url=fuzz_server.base_url, timeout=30) as client:
        yield client
    assert fuzz_server.process.poll() is None, f"API died:\n{fuzz_server.log_tail()}"


async def assert_tables_intact(fuzz_server: ApiServer) -> None:
    """dl_jobs and dl_schedules are still there and readable."""
    connection = await asyncpg.connect(fuzz_server.dsn)
    try:
        for table in ("dl_jobs", "dl_schedules"):
            assert await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
            await connection.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await connection.close()


# --- deep and huge bodies -----------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 10_000, 100_000])
@pytest.mark.parametrize("path", [TRIGGER, BULK, SCHEDULES])
async def test_deeply_nested_json_is_400(client: httpx.AsyncClient, path: str, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    if path == TRIGGER:
        raw = '{"queue":"fuzz","task":"noop","lock_key":"fuzz","args":{"x":' + nested + "}}"
    elif path == BULK:
        raw = '{"jobs":[{"queue":"fuzz","task":"noop","lock_key":"fuzz","args":{"x":' + nested
        raw += "}}]}"
    else:
        raw = (
            '{"name":"deep","cron":"* * * * *","queue":"fuzz","task":"noop","lock_key":"k",'
            '"args":{"x":' + nested + "}}"
        )
    response = await client.post(
        path, content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert_status(response, 400)  # well under the body limit: a nesting error, not a 413


async def test_deeply_nested_object_as_whole_body_is_400(client: httpx.AsyncClient) -> None:
    raw = '{"a":' * 10_000 + "1" + "}" * 10_000
    response = await client.post(
        TRIGGER, content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert_status(response, 400)


@pytest.mark.parametrize("path", [TRIGGER, BULK, SCHEDULES])
async def test_body_over_the_limit_is_413(client: httpx.AsyncClient, path: str) -> None:
    filler = "x" * (MAX_BODY_BYTES + 10)
    raw = b'{"queue":"fuzz","task":"noop","lock_key":"fuzz","args":{"x":"' + filler.encode()
    raw += b'"}}'
    response = await client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_status(response, 413)


async def test_body_over_the_limit_in_chunks_is_413(client: httpx.AsyncClient) -> None:
    """No Content-Length (chunked): the limit holds all the same."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"queue":"fuzz","task":"noop","lock_key":"fuzz","args":{"x":"'
        for _ in range(20):
            yield b"x" * (MAX_BODY_BYTES // 10)
        yield b'"}}'

    response = await client.post(
        TRIGGER, content=chunks(), headers={"content-type": "application/json"}
    )
    assert_status(response, 413)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b"42",
        b'"text"',
        b"{",
        b'{"queue":',
        b"\xff\xfe\x00",
        b'{"queue":"fuzz\xed\xa0\x80","task":"noop","lock_key":"k"}',  # a surrogate as UTF-8
        b'{"queue":"fuzz","task":"noop","lock_key":"k\\ud800"}',  # a lone surrogate escape
        b'{"queue":"fuzz","task":"noop","lock_key":"k","args":{"\\ud800":"\\udfff"}}',
        b'{"queue":"fuzz","task":"noop","lock_key":"k","args":{"a":NaN}}',
        b'{"queue":"fuzz","task":"noop","lock_key":"k","args":{"a":1e400}}',
        b'{"queue":"fuzz","task":"noop","lock_key":"k","queue":"other"}',
    ],
)
@pytest.mark.parametrize("path", [TRIGGER, BULK, SCHEDULES])
async def test_malformed_json_is_400(client: httpx.AsyncClient, path: str, raw: bytes) -> None:
    response = await client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_status(response, 400)


# A repeated key is refused wherever it is (RFC 8259 leaves duplicate names to the parser;
# taking the last one would let two readers of one body see two different requests).
REPEATED_KEYS = [
    (TRIGGER, b'{"queue":"fuzz","task":"noop","lock_key":"k","queue":"other"}', "queue"),
    (TRIGGER, b'{"queue":"fuzz","task":"noop","lock_key":"k","args":{"a":1,"a":2}}', "a"),
    (BULK, b'{"jobs":[{"queue":"fuzz","task":"noop","lock_key":"k","lock_key":"j"}]}', "lock_key"),
    (
        SCHEDULES,
        b'{"name":"dup","cron":"* * * * *","queue":"fuzz","task":"noop","lock_key":"k",'
        b'"cron":"*/5 * * * *"}',
        "cron",
    ),
]


@pytest.mark.parametrize(("path", "raw", "key"), REPEATED_KEYS)
async def test_repeated_json_keys_are_400_naming_the_key(
    client: httpx.AsyncClient, path: str, raw: bytes, key: str
) -> None:
    response = await client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_status(response, 400)
    assert f"repeats the key {key!r}" in response.json()["detail"], response.text


async def test_repeated_json_key_in_a_schedule_patch_is_400(client: httpx.AsyncClient) -> None:
    created = await client.post(SCHEDULES, json=schedule_body())
    assert created.status_code == 201, created.text
    response = await client.patch(
        f"{SCHEDULES}/{created.json()['name']}",
        content=b'{"enabled":false,"enabled":true}',
        headers={"content-type": "application/json"},
    )
    assert_status(response, 400)
    assert "repeats the key 'enabled'" in response.json()["detail"], response.text
    unchanged = await client.get(f"{SCHEDULES}/{created.json()['name']}")
    assert unchanged.json()["enabled"] is True, "nothing was changed"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"queue":"fuzz","task":"noop","lock_key":"k\\ud800"}',
        b'{"queue":"fuzz","task":"noop","lock_key":"k\\ud800x"}',
        b'{"queue":"fuzz","task":"noop","lock_key":"k","args":{"a":"\\udfff"}}',
    ],
)
@pytest.mark.parametrize("path", [TRIGGER, SCHEDULES])
async def test_lone_surrogate_escape_is_named_as_such(
    client: httpx.AsyncClient, path: str, raw: bytes
) -> None:
    response = await client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_status(response, 400)
    detail = response.json()["detail"]
    assert "lone UTF-16 surrogate" in detail, detail
    assert "truncated" not in detail, detail


async def test_lone_surrogate_in_schedule_args_is_refused(client: httpx.AsyncClient) -> None:
    raw = (
        b'{"name":"surrogate","cron":"* * * * *","queue":"fuzz","task":"noop",'
        b'"lock_key":"k","args":{"a":"\\ud800"}}'
    )
    response = await client.post(
        SCHEDULES, content=raw, headers={"content-type": "application/json"}
    )
    assert_status(response, 400)


# --- content types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        None,
    ],
)
@pytest.mark.parametrize("path", [TRIGGER, BULK, SCHEDULES])
async def test_wrong_content_type_is_415(
    client: httpx.AsyncClient, path: str, content_type: str | None
) -> None:
    body = job_body() if path == TRIGGER else schedule_body()
    if path == BULK:
        body = {"jobs": [job_body()]}
    headers = {"content-type": content_type} if content_type else {}
    raw = httpx.Request("POST", "http://x", json=body).content
    response = await client.post(path, content=raw, headers=headers)
    assert_status(response, 415)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_on_schedule_patch_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    created = await client.post(SCHEDULES, json=schedule_body())
    assert created.status_code == 201, created.text
    headers = {"content-type": content_type} if content_type else {}
    response = await client.patch(
        f"{SCHEDULES}/{created.json()['name']}", content=b'{"enabled":false}', headers=headers
    )
    assert_status(response, 415)


async def test_form_body_is_400(client: httpx.AsyncClient) -> None:
    """The body is read as JSON before its Content-Type is looked at: not JSON, so a 400."""
    response = await client.post(TRIGGER, data={"queue": "fuzz", "task": "noop"})
    assert_status(response, 400)
    assert response.json()["detail"].startswith("JSON is malformed"), response.text


# --- job ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_UUIDS)
async def test_invalid_job_ids_are_400(client: httpx.AsyncClient, bad: str) -> None:
    for template in JOB_ID_PATHS:
        response = await client.get(f"{JOBS}/{template.format(bad)}")
        assert_status(response, 400)
    for template in JOB_ID_ACTIONS:
        response = await client.post(f"{JOBS}/{template.format(bad)}")
        assert_status(response, 400)


@pytest.mark.parametrize(
    ("raw_path", "status"),
    [
        ("%00", 400),
        ("%ED%A0%80", 400),
        ("%FF", 400),
        ("..%2F..%2Fetc", 404),  # the decoded slashes split the path: no route matches
        ("%27%20OR%201%3D1%20--", 400),
    ],
)
async def test_encoded_job_ids_are_4xx(
    client: httpx.AsyncClient, fuzz_server: ApiServer, raw_path: str, status: int
) -> None:
    for template in JOB_ID_PATHS + JOB_ID_ACTIONS:
        method = "POST" if template in JOB_ID_ACTIONS else "GET"
        url = f"{fuzz_server.base_url}{JOBS}/{template.format(raw_path)}"
        response = await client.request(method, url)
        assert_status(response, status)


async def test_unknown_but_valid_job_id_is_404(client: httpx.AsyncClient) -> None:
    job_id = uuid.uuid4()
    for template in JOB_ID_PATHS:
        assert_status(await client.get(f"{JOBS}/{template.format(job_id)}"), 404)
    for template in JOB_ID_ACTIONS:
        assert_status(await client.post(f"{JOBS}/{template.format(job_id)}"), 404)


# --- hostile text in filters and names ----------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_TEXT)
async def test_hostile_text_in_every_list_filter(
    client: httpx.AsyncClient, fuzz_server: ApiServer, text: str
) -> None:
    text_status = 400 if "\x00" in text or len(text) > 500 else 200
    expected = {
        **dict.fromkeys(TEXT_FILTERS, text_status),
        **dict.fromkeys(SYNTAX_FILTERS, 200 if not text.strip() else 400),
        **dict.fromkeys(STRICT_FILTERS, 400),
    }
    for name in LIST_FILTERS:
        response = await client.get(JOBS, params={name: text})
        assert_status(response, expected[name])
    response = await client.get(SCHEDULES, params={"after": text})  # a schedule name
    assert_status(response, text_status)
    for events_param in ("after", "limit"):  # numbers, checked before the job is looked up
        response = await client.get(f"{JOBS}/{uuid.uuid4()}/events", params={events_param: text})
        assert_status(response, 400)
    await assert_tables_intact(fuzz_server)


@pytest.mark.parametrize(
    "raw_query",
    ["%00", "%ED%A0%80", "%FF%FE", "%C0%AF", "%27%20OR%201%3D1%20--", "%E2%80%AE", "%"],
)
async def test_undecodable_bytes_in_every_list_filter(
    client: httpx.AsyncClient, fuzz_server: ApiServer, raw_query: str
) -> None:
    """Percent-encoded bytes that are not UTF-8 (a surrogate, 0xFF) or a lone `%`.

    Undecodable bytes are replaced, so an exact-match filter just matches nothing (200);
    a NUL is a 400 there, and every filter with a syntax refuses all of them.
    """
    for name in LIST_FILTERS:
        url = f"{fuzz_server.base_url}{JOBS}?{name}={raw_query}"
        response = await client.get(url)
        assert_status(response, 200 if name in TEXT_FILTERS and raw_query != "%00" else 400)
    await assert_tables_intact(fuzz_server)


NAME_CHARS = re.compile(r"[A-Za-z0-9_.:\-]+")  # README.md: letters, digits and `. _ : -`


def is_name(text: str, max_length: int) -> bool:
    """A queue, task or schedule name: only NAME_CHARS, and not too long."""
    return NAME_CHARS.fullmatch(text) is not None and len(text) <= max_length


def is_text(text: str, max_length: int) -> bool:
    """A key or label: README.md refuses blank values and NUL characters."""
    return bool(text.strip()) and "\x00" not in text and len(text) <= max_length


@pytest.mark.parametrize("text", HOSTILE_TEXT)
async def test_hostile_text_as_schedule_and_queue_names(
    client: httpx.AsyncClient, fuzz_server: ApiServer, text: str
) -> None:
    quoted = urllib.parse.quote(text, safe="")
    # A schedule or queue name is letters, digits and `. _ : -` (README.md): anything else is
    # a 400 naming the parameter. No schedule has such a name (404); a queue nobody used
    # still answers.
    schedule_status = 404 if is_name(text, 150) else 400
    queue_status = 200 if is_name(text, 100) else 400
    for method, path, status in [
        ("GET", f"{SCHEDULES}/{quoted}", schedule_status),
        ("DELETE", f"{SCHEDULES}/{quoted}", schedule_status),
        ("POST", f"{SCHEDULES}/{quoted}/enable", schedule_status),
        ("POST", f"{SCHEDULES}/{quoted}/disable", schedule_status),
        ("POST", f"{SCHEDULES}/{quoted}/run", schedule_status),
        ("GET", f"{QUEUES}/{quoted}", queue_status),
        ("POST", f"{QUEUES}/{quoted}/pause", queue_status),
        ("POST", f"{QUEUES}/{quoted}/resume", queue_status),
    ]:
        response = await client.request(method, fuzz_server.base_url + path)
        assert_status(response, status)
    response = await client.patch(
        f"{fuzz_server.base_url}{SCHEDULES}/{quoted}", json={"enabled": False}
    )
    assert_status(response, schedule_status)
    # No hostile text is a registered task, a cron expression or a time zone.
    schedule_fields = {
        "name": is_name(text, 150),
        "queue": is_name(text, 100),
        "task": False,
        "lock_key": is_text(text, 500),
        "cron": False,
        "timezone": False,
    }
    for field, valid in schedule_fields.items():
        response = await client.post(SCHEDULES, json=schedule_body(**{field: text}))
        assert_status(response, 201 if valid else 400)
    job_fields = {
        "queue": is_name(text, 100),
        "task": False,
        "lock_key": is_text(text, 500),
        "idempotency_key": is_text(text, 500),
        "partition_key": is_text(text, 200),
        "producer": is_text(text, 200),
        "consumer_group": is_text(text, 200),
    }
    for field, valid in job_fields.items():
        response = await client.post(TRIGGER, json=job_body(**{field: text}))
        assert_status(response, 200 if valid else 400)
    response = await client.post(TRIGGER, json=job_body(args={text: text}))
    assert_status(response, 400 if "\x00" in text else 200)  # args are the client's own
    await assert_tables_intact(fuzz_server)
    assert (await client.get(QUEUES)).status_code == 200
    assert (await client.get(JOBS)).status_code == 200
    assert (await client.get(SCHEDULES)).status_code == 200


@pytest.mark.parametrize(
    "raw_segment", ["%00", "%ED%A0%80", "%FF", "%C0%AF", "%27%3B%20DROP%20TABLE%20dl_jobs"]
)
async def test_undecodable_bytes_in_schedule_and_queue_paths(
    client: httpx.AsyncClient, fuzz_server: ApiServer, raw_segment: str
) -> None:
    # Schedule and queue names are letters, digits and `. _ : -` only (README.md): 400.
    for method, path, status in [
        ("GET", f"{SCHEDULES}/{raw_segment}", 400),
        ("POST", f"{SCHEDULES}/{raw_segment}/run", 400),
        ("GET", f"{QUEUES}/{raw_segment}", 400),
        ("POST", f"{QUEUES}/{raw_segment}/pause", 400),
    ]:
        response = await client.request(method, fuzz_server.base_url + path)
        assert_status(response, status)
    await assert_tables_intact(fuzz_server)


# --- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HUGE_NUMBERS)
@pytest.mark.parametrize("field", ["priority", "max_attempts", "lease_ttl_sec"])
async def test_out_of_range_numbers_in_bodies_are_400(
    client: httpx.AsyncClient, field: str, value: Any
) -> None:
    response = await client.post(TRIGGER, json=job_body(**{field: value}))
    assert_status(response, 400)
    response = await client.post(BULK, json={"jobs": [job_body(**{field: value})]})
    assert_status(response, 400)
    response = await client.post(SCHEDULES, json=schedule_body(**{field: value}))
    assert_status(response, 400)
    response = await client.patch(f"{SCHEDULES}/nope", json={field: value})
    assert_status(response, 400)  # the body is checked before the schedule is looked up


# `after` (an event id, a bigint) takes any integer from 0 to 2^63-1; then the job is looked
# up, and it is unknown.
@pytest.mark.parametrize(
    ("value", "as_after"),
    [
        ("-1", 400),
        ("0", 404),
        (str(2**63 - 1), 404),
        (str(10**30), 400),
        (str(2**63), 400),
        ("1.5", 400),
        ("1e400", 400),
        ("NaN", 400),
    ],
)
async def test_out_of_range_limits_are_400(
    client: httpx.AsyncClient, value: str, as_after: int
) -> None:
    for path in (JOBS, SCHEDULES, f"{JOBS}/{uuid.uuid4()}/events"):
        response = await client.get(path, params={"limit": value})
        assert_status(response, 400)
    response = await client.get(f"{JOBS}/{uuid.uuid4()}/events", params={"after": value})
    assert_status(response, as_after)


async def test_event_ids_past_bigint_are_400_naming_after(client: httpx.AsyncClient) -> None:
    """The finding: on a job that exists, `after` past 2^63-1 reached asyncpg (int64)."""
    created = await client.post(TRIGGER, json=job_body(queue="fuzz-events"))
    assert_status(created, 200)
    events = f"{JOBS}/{created.json()['job_id']}/events"
    for value in (str(2**63), str(10**30)):
        response = await client.get(events, params={"after": value})
        assert_status(response, 400)
        assert "(field `after`)" in response.json()["detail"], response.text
    response = await client.get(events, params={"after": str(2**63 - 1)})
    assert_status(response, 200)
    assert response.json()["events"] == []


# Every text field of a body, with a NUL inside: a 400 naming the field, before the database
# (PostgreSQL text and jsonb cannot hold NUL; its refusal named the encoding).
JOB_TEXT_FIELDS = [
    "queue",
    "task",
    "lock_key",
    "idempotency_key",
    "partition_key",
    "producer",
    "consumer_group",
]
SCHEDULE_TEXT_FIELDS = ["name", "cron", "timezone", "queue", "task", "lock_key"]


@pytest.mark.parametrize("field", JOB_TEXT_FIELDS)
async def test_nul_in_a_job_field_is_400_naming_it(client: httpx.AsyncClient, field: str) -> None:
    response = await client.post(TRIGGER, json=job_body(**{field: "a\x00b"}))
    assert_status(response, 400)
    assert f"`{field}`" in response.json()["detail"], response.text
    response = await client.post(BULK, json={"jobs": [job_body(**{field: "a\x00b"})]})
    assert_status(response, 400)
    assert f"`{field}`" in response.json()["detail"] or field in response.text, response.text


@pytest.mark.parametrize("field", SCHEDULE_TEXT_FIELDS)
async def test_nul_in_a_schedule_field_is_400(client: httpx.AsyncClient, field: str) -> None:
    response = await client.post(SCHEDULES, json=schedule_body(**{field: "a\x00b"}))
    assert_status(response, 400)
    assert field in response.json()["detail"], response.text
    if field != "name":  # the name cannot change
        created = await client.post(SCHEDULES, json=schedule_body())
        assert created.status_code == 201, created.text
        path = f"{SCHEDULES}/{created.json()['name']}"
        response = await client.patch(path, json={field: "a\x00b"})
        assert_status(response, 400)
        assert field in response.json()["detail"], response.text


async def test_nul_in_args_is_400_naming_where(client: httpx.AsyncClient) -> None:
    response = await client.post(TRIGGER, json=job_body(args={"deep": ["ok", "a\x00b"]}))
    assert_status(response, 400)
    assert "$.args.deep[1]" in response.json()["detail"], response.text


async def test_nul_in_the_schedule_listing_cursor_is_400_naming_after(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(SCHEDULES, params={"after": "a\x00b"})
    assert_status(response, 400)
    assert "`after`" in response.json()["detail"], response.text


# --- request ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health"), ("GET", "/nowhere"), ("GET", JOBS), ("POST", TRIGGER), ("GET", QUEUES)],
)
async def test_every_answer_carries_the_callers_request_id(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    """A sane X-Request-ID comes back as sent (errors repeat it in the body); else a new one."""
    response = await client.request(method, path, headers={"X-Request-ID": "client-trace-42"})
    assert response.headers["x-request-id"] == "client-trace-42"
    if response.status_code >= 400:
        assert response.json()["request_id"] == "client-trace-42"
    response = await client.request(method, path, headers={"X-Request-ID": "bad id\t<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), response.headers


async def test_log_lines_of_a_request_carry_its_id(
    client: httpx.AsyncClient, fuzz_server: ApiServer
) -> None:
    """The id a client quotes finds the request's lines in the log (here its access line)."""
    trace = f"trace-{uuid.uuid4().hex}"
    response = await client.get(JOBS, params={"status": "bogus"}, headers={"X-Request-ID": trace})
    assert_status(response, 400)

    def logged() -> list[dict[str, Any]]:
        lines = fuzz_server.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if trace in line]

    found = await wait_until(logged, timeout=10, what="a log line with the request id")
    assert all(line.get("request_id") == trace for line in found), found


async def test_huge_args_numbers_do_not_break_the_job(client: httpx.AsyncClient) -> None:
    raw = b'{"queue":"fuzz","task":"noop","lock_key":"k","args":{"n":' + b"9" * 4000 + b"}}"
    response = await client.post(TRIGGER, content=raw, headers={"content-type": "application/json"})
    assert_status(response, 200)  # args are the client's own: any JSON number is kept
    job = await client.get(f"{JOBS}/{response.json()['job_id']}")
    assert_status(job, 200)


async def test_too_many_bulk_items_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(BULK, json={"jobs": [job_body()] * 1001})
    assert_status(response, 400)


# --- timestamps ---------------------------------------------------------------------------

# (value, as a list filter, as available_at). Filters take any RFC 3339 time Python can hold
# (a date alone is its midnight, an empty value is no filter); available_at must also be a
# full timestamp between 1970 and 2200 (README.md: "available_at: RFC 3339").
TIMESTAMPS = [
    ("2026-11-24T15:00:00Z", 200, 200),
    ("2026-11-24T15:00:00+00:00", 200, 200),
    ("2026-11-24T15:00:00+14:00", 200, 200),
    ("2026-11-24T15:00:00-12:00", 200, 200),
    ("2026-11-24T15:00:00", 200, 200),  # no zone: UTC
    ("2026-11-24", 200, 400),
    ("2026-11-24T15:00:00.123456789Z", 200, 200),
    ("2026-11-24T15:00:00+25:00", 400, 400),
    ("2026-11-24T15:00:00+23:59", 200, 200),
    ("2026-02-30T00:00:00Z", 400, 400),
    ("0000-01-01T00:00:00Z", 400, 400),
    ("0001-01-01T00:00:00Z", 200, 400),
    ("0001-01-01T00:00:00+14:00", 400, 400),  # before year 1 in UTC
    ("9999-12-31T23:59:59Z", 200, 400),
    ("9999-12-31T23:59:59-12:00", 400, 400),  # after year 9999 in UTC
    ("99999-01-01T00:00:00Z", 400, 400),
    ("-0001-01-01T00:00:00Z", 400, 400),
    ("1e10", 400, 400),
    ("now", 400, 400),
    ("", 200, 400),
]


@pytest.mark.parametrize(("value", "as_filter"), [(v, f) for v, f, _ in TIMESTAMPS])
async def test_timestamps_in_list_filters(
    client: httpx.AsyncClient, value: str, as_filter: int
) -> None:
    for name in ("created_after", "created_before", "finished_after", "finished_before"):
        response = await client.get(JOBS, params={name: value})
        assert_status(response, as_filter)


@pytest.mark.parametrize(("value", "as_available_at"), [(v, a) for v, _, a in TIMESTAMPS])
async def test_timestamps_as_available_at(
    client: httpx.AsyncClient, value: str, as_available_at: int
) -> None:
    response = await client.post(TRIGGER, json=job_body(available_at=value))
    assert_status(response, as_available_at)
    if response.status_code == 200:
        job = await client.get(f"{JOBS}/{response.json()['job_id']}")
        assert_status(job, 200)
    response = await client.post(BULK, json={"jobs": [job_body(available_at=value)]})
    assert_status(response, as_available_at)


# An IANA zone name or a 400 (README.md: "a bad cron, time zone or job template is a 400").
@pytest.mark.parametrize(
    ("timezone", "status"),
    [
        ("Europe/Moscow", 201),
        ("UTC", 201),
        ("+03:00", 400),
        ("../../etc/passwd", 400),
        ("Mars/Olympus", 400),
        ("\x00", 400),
    ],
)
async def test_schedule_time_zones(client: httpx.AsyncClient, timezone: str, status: int) -> None:
    response = await client.post(SCHEDULES, json=schedule_body(timezone=timezone))
    assert_status(response, status)


@pytest.mark.parametrize(
    ("cron", "status"),
    [
        ("* * * * *", 201),
        ("61 * * * *", 400),
        ("* * 31 2 *", 400),  # never fires
        ("@reboot", 400),
        ("@yearly", 201),
        ("* * * * * * *", 400),
        ("", 400),
        ("ä", 400),
    ],
)
async def test_schedule_cron_expressions(client: httpx.AsyncClient, cron: str, status: int) -> None:
    response = await client.post(SCHEDULES, json=schedule_body(cron=cron))
    assert_status(response, status)
