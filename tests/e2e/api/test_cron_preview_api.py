"""GET /api/v1/cron/preview on a real server: the scheduler's own fire times, and refusals."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

PREVIEW = "/api/v1/cron/preview"


async def test_cron_preview_lists_the_next_fire_times_in_utc(client: httpx.AsyncClient) -> None:
    """02:00 in Berlin, five days running, answered in UTC (01:00 in winter, 00:00 in summer)."""
    response = await client.get(
        PREVIEW, params={"cron": "0  2 * * *", "timezone": "Europe/Berlin", "count": 5}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cron"] == "0 2 * * *"
    assert body["timezone"] == "Europe/Berlin"
    times = [datetime.fromisoformat(t) for t in body["next"]]
    assert len(times) == 5
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert times[0] > datetime.now(UTC)
    local = [t.astimezone(ZoneInfo("Europe/Berlin")) for t in times]
    assert all((t.hour, t.minute) == (2, 0) for t in local), local
    days = [t.date() for t in local]
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(days)), days


async def test_cron_preview_refuses_bad_input(client: httpx.AsyncClient) -> None:
    """A bad expression, zone or count is a 400 each, never a 500."""
    bad = [
        {"cron": "61 * * * *"},
        {"cron": "* * *"},
        {"cron": ""},
        {"cron": "0 0 31 2 *"},
        {"cron": "* * * * *", "timezone": "Mars/Base"},
        {"cron": "* * * * *", "timezone": "../../etc/passwd"},
        {"cron": "* * * * *", "timezone": "UTC\x00"},
        {"cron": "*\x00 * * * *"},
        {"cron": "* * * * *", "count": 0},
        {"cron": "* * * * *", "count": 21},
        {"cron": "* " * 200},
        {},
    ]
    for params in bad:
        response = await client.get(PREVIEW, params=params)
        assert response.status_code == 400, (params, response.text)
