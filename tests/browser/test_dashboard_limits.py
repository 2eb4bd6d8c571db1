"""Flow control in the dashboard: a queue's rate limits set and cleared from the queues page,
and a job held back by one says so on its page. Screenshots: test-output/dashboard/limits-*.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.dashboard import Dashboard
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.async_api import Page

NO_LIMITS = "\u2013"  # the dashboard's dash for "none"
WORKER_QUEUE = "etl.default"  # the module worker's queue (tests/browser/conftest.py)


async def trigger(dashboard: Dashboard, queue: str, **fields: Any) -> str:
    """Create a job over the API; its id."""
    body = {"queue": queue, "task": "noop", "lock_key": uuid.uuid4().hex, **fields}
    response = await dashboard.client.post("/api/v1/jobs/trigger", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


async def limits_of(dashboard: Dashboard, queue: str) -> Any:
    return (await dashboard.client.get(f"/api/v1/queues/{queue}/limits")).json()


async def test_dashboard_sets_and_clears_a_queues_rate_limits(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """The Limits button loads a queue into the form; Save shows the limits in the table,
    a count the server refuses is shown in place and changes nothing, Clear removes both."""
    from playwright.async_api import expect

    queue = f"etl.limits.{uuid.uuid4().hex[:6]}"  # no worker serves it
    await trigger(dashboard, queue)
    served = await dashboard.client.get("/dashboard/static/flow_control.js")
    assert "javascript" in served.headers["content-type"], served.headers

    await page.goto(dashboard.url)
    row = page.locator(f'#queues-table tr[data-queue="{queue}"]')
    await expect(row.locator("td.limits-cell")).to_have_text(NO_LIMITS)
    assert not await page.locator("#limits-form").is_visible()
    await row.locator("button.edit-limits").click()
    await expect(page.locator("#limits-form")).to_be_visible()
    await expect(page.locator("#limits-queue")).to_have_value(queue)
    await page.fill("#limits-start-count", "20")
    await page.fill("#limits-start-period", "1")
    await page.fill("#limits-per_rate_key-count", "5")
    await page.fill("#limits-per_rate_key-period", "0.5")
    await page.click("#limits-save")

    await expect(page.locator("#limits-result .notice.ok")).to_contain_text(
        "limits 20/1s · 5/500ms per key"
    )
    await expect(row.locator("td.limits-cell")).to_have_text("20/1s · 5/500ms per key")
    assert await limits_of(dashboard, queue) == {
        "start": {"count": 20, "period_sec": 1.0},
        "per_rate_key": {"count": 5, "period_sec": 0.5},
    }
    await page.screenshot(path=screenshot_dir / "limits-01-queues.png", full_page=True)

    # Out of the server's range: its 400 names the field, in the form, and nothing changes.
    await page.fill("#limits-start-count", "20000")
    await page.click("#limits-save")
    await expect(page.locator("#limits-result .notice.error")).to_contain_text("start.count")
    assert (await limits_of(dashboard, queue))["start"] == {"count": 20, "period_sec": 1.0}
    await page.screenshot(path=screenshot_dir / "limits-02-refused.png", full_page=True)

    # Emptying a count removes that limit only; Clear removes both.
    await page.fill("#limits-start-count", "")
    await page.click("#limits-save")
    await expect(row.locator("td.limits-cell")).to_have_text("5/500ms per key")
    await page.click("#limits-clear")
    await expect(page.locator("#limits-result .notice.ok")).to_contain_text("limits cleared")
    await expect(row.locator("td.limits-cell")).to_have_text(NO_LIMITS)
    assert await limits_of(dashboard, queue) == {"start": None, "per_rate_key": None}


async def test_dashboard_shows_why_a_queued_job_waits_and_until_when(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """One start an hour on the worker's queue: the second job waits for the rate limit, and
    its page shows that, its available_at, its rate_key and its concurrency group."""
    from playwright.async_api import expect

    limits = {"start": {"count": 1, "period_sec": 3600}}
    put = await dashboard.client.put(f"/api/v1/queues/{WORKER_QUEUE}/limits", json=limits)
    assert put.status_code == 200, put.text
    try:
        first = await trigger(dashboard, WORKER_QUEUE, args={"steps": 0})

        async def succeeded() -> bool:
            job = (await dashboard.client.get(f"/api/v1/jobs/{first}")).json()
            return bool(job["status"] == "succeeded")

        await wait_until(
            succeeded, timeout=30, what="the first job ran", diagnostics=dashboard.diagnostics
        )
        held = await trigger(
            dashboard,
            WORKER_QUEUE,
            rate_key="partner-a",
            concurrency_key="partner-api",
            concurrency_limit=3,
        )

        async def waiting() -> dict[str, Any] | None:
            job: dict[str, Any] = (await dashboard.client.get(f"/api/v1/jobs/{held}")).json()
            return job if job["waiting_for"] == "rate_limit" else None

        job = await wait_until(
            waiting, timeout=30, what="the job waits", diagnostics=dashboard.diagnostics
        )

        await page.goto(f"{dashboard.url}#/jobs/{held}")
        await expect(page.locator("#job-status")).to_have_attribute("data-status", "queued")
        field = page.locator('#job-fields dd[data-field="waiting_for"]')
        await expect(field.locator(".waiting-for")).to_have_text("rate limit")
        until = field.locator("time")
        await expect(until).to_have_attribute("datetime", job["available_at"])
        shown = await until.get_attribute("datetime")
        assert shown is not None
        assert datetime.fromisoformat(shown) > datetime.fromisoformat(job["created_at"])
        await expect(page.locator('#job-fields dd[data-field="rate_key"]')).to_have_text(
            "partner-a"
        )
        await expect(page.locator('#job-fields dd[data-field="concurrency_key"]')).to_have_text(
            "partner-api (at most 3 at once)"
        )
        await expect(page.locator('#job-events li[data-event="rate_limited"]')).to_be_visible()
        await page.screenshot(path=screenshot_dir / "limits-03-job-waiting.png", full_page=True)

        # In the job list it is "waiting", not "scheduled", with the reason on hover.
        await page.goto(f"{dashboard.url}#/jobs?queue={WORKER_QUEUE}&status=queued")
        badge = page.locator(f'#jobs-table tr[data-job-id="{held}"] .badge.kind')
        await expect(badge).to_have_text("waiting")
        await expect(badge).to_have_attribute("title", "waiting for rate limit")
        await page.screenshot(path=screenshot_dir / "limits-04-jobs-waiting.png", full_page=True)
    finally:
        await dashboard.client.put(f"/api/v1/queues/{WORKER_QUEUE}/limits", json={})


async def test_dashboard_makes_a_queue_fair_and_back(page: Page, dashboard: Dashboard) -> None:
    """Make fair marks the queue `fair` and sets it on the server; End fairness undoes both."""
    from playwright.async_api import expect

    queue = f"etl.fair.{uuid.uuid4().hex[:6]}"  # no worker serves it
    await trigger(dashboard, queue, partition_key="tenant-a")
    await page.goto(dashboard.url)
    row = page.locator(f'#queues-table tr[data-queue="{queue}"]')
    await expect(row.locator("button.toggle-fair")).to_have_text("Make fair")
    await expect(row.locator(".badge.fair")).to_have_count(0)

    await row.locator("button.toggle-fair").click()

    await expect(row.locator(".badge.fair")).to_have_text("fair")
    await expect(row.locator("button.toggle-fair")).to_have_text("End fairness")
    fairness = await dashboard.client.get(f"/api/v1/queues/{queue}/fairness")
    assert fairness.json() == {"by": "partition_key"}

    await row.locator("button.toggle-fair").click()

    await expect(row.locator(".badge.fair")).to_have_count(0)
    fairness = await dashboard.client.get(f"/api/v1/queues/{queue}/fairness")
    assert fairness.json() == {"by": None}
