"""Dashboard v2 in headless chromium: counts, queued kinds, bulk actions, args search,
narrow layout, workers page, schedule form. Screenshots go to test-output/dashboard/ (v2-*).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from tests.support.dashboard import Dashboard
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.async_api import Page

NARROW = {"width": 420, "height": 900}
WIDE = {"width": 1280, "height": 900}


async def trigger(dashboard: Dashboard, queue: str = "etl.default", **fields: Any) -> str:
    """Create a job over the API; its id."""
    body = {"queue": queue, "task": "noop", "lock_key": uuid.uuid4().hex, **fields}
    response = await dashboard.client.post("/api/v1/jobs/trigger", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


async def status_of(dashboard: Dashboard, job_id: str) -> str:
    return str((await dashboard.client.get(f"/api/v1/jobs/{job_id}")).json()["status"])


async def wait_status(dashboard: Dashboard, job_id: str, wanted: str) -> None:
    async def reached() -> bool:
        return await status_of(dashboard, job_id) == wanted

    await wait_until(
        reached, timeout=30, what=f"job {job_id} {wanted}", diagnostics=dashboard.diagnostics
    )


async def no_horizontal_overflow(page: Page, selector: str) -> bool:
    """Whether the element fits the viewport's width (nothing sticks out to the right)."""
    return bool(
        await page.eval_on_selector(
            selector,
            "el => el.scrollWidth <= el.clientWidth + 1"
            " && el.getBoundingClientRect().right <= window.innerWidth + 1",
        )
    )


async def test_dashboard_jobs_page_counts_kinds_errors_and_times(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """Counts per state, due/scheduled/retrying apart with their due time, error and duration
    columns, relative times with ISO on hover, the trigger form collapsed, ISO text inputs."""
    from playwright.async_api import expect

    queue = f"etl.v2.{uuid.uuid4().hex[:6]}"
    later = (datetime.now(UTC) + timedelta(hours=2, minutes=5)).isoformat()
    scheduled = await trigger(dashboard, queue, available_at=later)
    # Queued again after a failed attempt, its backoff ending in 2 h: as the worker leaves it.
    retrying = await trigger(dashboard, queue)
    connection = await asyncpg.connect(dashboard.api.dsn)
    try:
        await connection.execute(
            "UPDATE dl_jobs SET attempt = 1, error = 'boom',"
            " available_at = now() + interval '2 hours 5 minutes' WHERE job_id = $1",
            uuid.UUID(retrying),
        )
    finally:
        await connection.close()
    failed = await trigger(
        dashboard,
        "etl.default",
        max_attempts=1,
        args={"steps": 1, "fail_at_step": 0, "fail_attempts": 1},
    )
    done = await trigger(dashboard, "etl.default", args={"steps": 2, "sleep": 0.2})
    await wait_status(dashboard, failed, "failed")
    await wait_status(dashboard, done, "succeeded")

    await page.set_viewport_size(WIDE)
    await page.goto(f"{dashboard.url}#/jobs")
    counts = page.locator("#job-counts")
    await expect(counts.locator('[data-state="scheduled"] .count-n')).not_to_have_text("0")
    await expect(counts.locator('[data-state="retrying"] .count-n')).not_to_have_text("0")
    await expect(counts.locator('[data-state="failed"] .count-n')).not_to_have_text("0")
    await expect(page.locator("#next-due time")).to_have_text("in 2 h")
    await expect(page.locator("#trigger-panel")).not_to_have_attribute("open", "")
    assert not await page.locator("#trigger-form").is_visible()

    scheduled_row = page.locator(f'#jobs-table tr[data-job-id="{scheduled}"]')
    await expect(scheduled_row.locator(".badge.kind")).to_have_text("scheduled")
    await expect(scheduled_row.locator(".due-at time")).to_have_text("in 2 h")
    retry_row = page.locator(f'#jobs-table tr[data-job-id="{retrying}"]')
    await expect(retry_row.locator(".badge.kind")).to_have_text("retrying")
    await expect(retry_row.locator(".due-at time")).to_have_text("in 2 h")
    failed_row = page.locator(f'#jobs-table tr[data-job-id="{failed}"]')
    await expect(failed_row.locator(".error-cell")).not_to_have_text("")
    done_row = page.locator(f'#jobs-table tr[data-job-id="{done}"]')
    await expect(done_row.locator(".duration")).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    created = done_row.locator("td time.rel").first
    await expect(created).to_have_text(re.compile(r"^(\d+ (s|min) ago|just now)$"))
    title = await created.get_attribute("title")
    assert title is not None
    assert datetime.fromisoformat(title).tzinfo is not None
    await page.screenshot(path=screenshot_dir / "v2-01-jobs-1280.png", full_page=True)

    # ISO text inputs: what one types is what the API gets, in the page's hash.
    await page.click("#filters-panel > summary")
    created_after = page.locator("#filter-created_after")
    assert await created_after.get_attribute("type") == "text"
    assert await created_after.get_attribute("pattern")
    await created_after.fill("2020-01-01T00:00:00Z")
    await page.fill("#filter-queue", queue)
    await page.click("#filter-apply")
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    assert "created_after=2020-01-01T00%3A00%3A00Z" in page.url
    await expect(page.locator("#filter-created_after")).to_have_value("2020-01-01T00:00:00Z")

    # 420 px: the header and the page fit; filters stay collapsed until opened.
    await page.set_viewport_size(NARROW)
    await page.goto(f"{dashboard.url}#/jobs")
    await expect(page.locator("#jobs-table")).to_be_visible()
    assert await no_horizontal_overflow(page, "header.topbar")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert not await page.locator("#jobs-filters").is_visible()
    await page.screenshot(path=screenshot_dir / "v2-02-jobs-420.png", full_page=True)
    await page.click("#filters-panel > summary")
    await expect(page.locator("#jobs-filters")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.screenshot(path=screenshot_dir / "v2-03-jobs-420-filters.png", full_page=True)


async def test_dashboard_bulk_cancel_and_retry_selected_jobs(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """Select jobs, cancel them in one go, then retry them: every one changes, once."""
    from playwright.async_api import expect

    queue = f"etl.bulk.{uuid.uuid4().hex[:6]}"  # no worker serves it: the jobs stay queued
    ids = [await trigger(dashboard, queue) for _ in range(3)]

    await page.set_viewport_size(WIDE)
    await page.goto(f"{dashboard.url}#/jobs?queue={queue}")
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(3)
    await expect(page.locator("#bulk-cancel")).to_be_disabled()
    await page.check("#jobs-select-all")
    await expect(page.locator("#bulk-count")).to_have_text("3 selected")
    await page.click("#bulk-cancel")
    await expect(page.locator("#jobs-message .notice")).to_have_text("Cancel: 3 canceled.")
    for job_id in ids:
        assert await status_of(dashboard, job_id) == "canceled"
    await expect(page.locator('#jobs-table tr[data-status="canceled"]')).to_have_count(3)
    await expect(page.locator("#bulk-count")).to_have_text("0 selected")

    # Retry two of them, one by one checkbox; the third stays canceled.
    for job_id in ids[:2]:
        await page.check(f'#jobs-table tr[data-job-id="{job_id}"] input.select-job')
    await page.click("#bulk-retry")
    await expect(page.locator("#jobs-message .notice")).to_have_text("Retry: 2 retried.")
    assert [await status_of(dashboard, job_id) for job_id in ids] == [
        "queued",
        "queued",
        "canceled",
    ]
    await page.screenshot(path=screenshot_dir / "v2-04-bulk-retry.png", full_page=True)


async def test_dashboard_searches_jobs_by_args(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """The args filter lists jobs whose args contain the object; bad JSON is refused in place."""
    from playwright.async_api import expect

    account = uuid.uuid4().hex[:10]
    match = await trigger(dashboard, args={"steps": 0, "account": account, "day": "2026-12-01"})
    await trigger(dashboard, args={"steps": 0, "account": account + "-other"})

    await page.set_viewport_size(WIDE)
    await page.goto(f"{dashboard.url}#/jobs")
    await page.click("#filters-panel > summary")
    await page.fill("#filter-args", "[1, 2")
    await page.click("#filter-apply")
    await expect(page.locator("#filters-message .notice")).to_contain_text("not valid JSON")
    await page.fill("#filter-args", json.dumps({"account": account}))
    await page.click("#filter-apply")
    rows = page.locator("#jobs-table tbody tr")
    await expect(rows).to_have_count(1)
    assert await rows.first.get_attribute("data-job-id") == match
    await expect(page.locator('#job-counts [data-state="succeeded"] .count-n')).to_have_text(
        "1", timeout=20_000
    )
    await page.screenshot(path=screenshot_dir / "v2-05-args-search.png", full_page=True)


async def test_dashboard_schedule_form_previews_creates_and_edits(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """The form previews the server's next fire times, creates a schedule, then edits it."""
    from playwright.async_api import expect

    name = f"v2-{uuid.uuid4().hex[:6]}"
    await page.set_viewport_size(WIDE)
    await page.goto(f"{dashboard.url}#/schedules")
    await page.click("#schedule-panel > summary")
    await page.fill("#schedule-name", name)
    await page.fill("#schedule-cron", "0 2 * * *")
    await page.fill("#schedule-timezone", "Europe/Berlin")
    await page.fill("#schedule-queue", "etl.default")
    await page.fill("#schedule-task", "noop")
    await page.fill("#schedule-lock-key", name)
    preview = page.locator("#schedule-preview li time")
    await expect(preview).to_have_count(5)
    expected = (
        await dashboard.client.get(
            "/api/v1/cron/preview", params={"cron": "0 2 * * *", "timezone": "Europe/Berlin"}
        )
    ).json()["next"]
    assert [await t.get_attribute("datetime") for t in await preview.all()] == expected
    # Shown as ISO-like text in the schedule's own zone, not the browser's locale format.
    await expect(preview.first).to_have_text(
        re.compile(r"^\d{4}-\d{2}-\d{2} 02:00:00 Europe/Berlin$")
    )
    await page.fill("#schedule-cron", "61 * * * *")
    await expect(page.locator("#schedule-preview-note .notice")).to_contain_text("cron")
    await page.fill("#schedule-cron", "0 2 * * *")
    await expect(preview).to_have_count(5)
    await page.screenshot(path=screenshot_dir / "v2-06-schedule-form.png", full_page=True)
    await page.click("#schedule-submit")
    await expect(page.locator("#schedule-result .notice")).to_contain_text("created")
    row = page.locator(f'#schedules-table tr[data-schedule="{name}"]')
    await expect(row).to_be_visible()

    await row.locator("button.edit").click()
    await expect(page.locator("#schedule-name")).to_be_disabled()
    await page.fill("#schedule-cron", "*/15 * * * *")
    await expect(preview).to_have_count(5)
    await page.click("#schedule-submit")
    await expect(page.locator("#schedule-result .notice")).to_contain_text("saved")
    stored = (await dashboard.client.get(f"/api/v1/schedules/{name}")).json()
    assert stored["cron"] == "*/15 * * * *"
    assert stored["timezone"] == "Europe/Berlin"
    await page.set_viewport_size(NARROW)
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.screenshot(path=screenshot_dir / "v2-07-schedules-420.png", full_page=True)


async def test_dashboard_workers_page_and_unserved_queue(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """The live worker with its queues and concurrency; a queue with a backlog and no consumer
    is flagged. Needs GET /api/v1/workers and the queue list's `unserved` (worker registry)."""
    from playwright.async_api import expect

    unserved = f"etl.nobody.{uuid.uuid4().hex[:6]}"
    await trigger(dashboard, unserved)

    await page.set_viewport_size(WIDE)
    await page.goto(f"{dashboard.url}#/workers")
    row = page.locator('#workers-table tr[data-worker="dash-1"]')
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("etl.default \u00d7 4")
    await expect(row).to_contain_text("noop")
    await page.screenshot(path=screenshot_dir / "v2-08-workers.png", full_page=True)

    await page.click('#nav a[data-route="queues"]')
    flagged = page.locator(f'#queues-table tr[data-queue="{unserved}"]')
    await expect(flagged).to_have_attribute("data-unserved", "true")
    await expect(flagged.locator(".badge.unserved")).to_have_text("no consumer")
    served = page.locator('#queues-table tr[data-queue="etl.default"]')
    await expect(served).to_have_attribute("data-unserved", "false")
    await page.screenshot(path=screenshot_dir / "v2-09-queues-unserved.png", full_page=True)
