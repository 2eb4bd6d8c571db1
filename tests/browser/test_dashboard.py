"""The web dashboard end to end: headless chromium against a real API and a real worker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from tests.support.dashboard import Dashboard
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.async_api import Page

LONG_NOOP_ARGS = '{"steps": 120, "sleep": 0.25}'  # 30 s unless canceled
PROGRESS_TIMEOUT_MS = 15_000
FINAL_TIMEOUT_MS = 20_000


async def processed(page: Page) -> int:
    """What the job page's progress bar shows as processed (-1 before any progress)."""
    value = await page.eval_on_selector(
        "#job-progress", "el => el.dataset.processed === '' ? -1 : Number(el.dataset.processed)"
    )
    return int(value)


async def trigger(dashboard: Dashboard, **fields: object) -> str:
    """Create a job over the API; its id."""
    body = {"queue": "etl.default", "task": "noop", "lock_key": uuid.uuid4().hex, **fields}
    response = await dashboard.client.post("/api/v1/jobs/trigger", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


async def wait_final(dashboard: Dashboard, job_id: str) -> None:
    """Poll the API until the job ended."""

    async def final() -> bool:
        body = (await dashboard.client.get(f"/api/v1/jobs/{job_id}")).json()
        return body.get("status") in {"succeeded", "failed", "canceled", "lost"}

    await wait_until(
        final, timeout=30, what=f"job {job_id} to end", diagnostics=dashboard.diagnostics
    )


async def test_dashboard_assets_served_with_content_types(dashboard: Dashboard) -> None:
    """The page, its script and its style come with the right types; none is in OpenAPI."""
    expected = {
        "/dashboard": "text/html",
        "/dashboard/": "text/html",
        "/dashboard/static/dashboard.js": "javascript",
        "/dashboard/static/dashboard.css": "text/css",
    }
    client = dashboard.client
    for path, media_type in expected.items():
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert media_type in response.headers["content-type"], (path, response.headers)
    page = (await client.get("/dashboard")).text
    assert "/dashboard/static/dashboard.js" in page
    assert "/dashboard/static/dashboard.css" in page
    assert (await client.get("/dashboard/static/missing.js")).status_code == 404
    assert (await client.get("/dashboard/static/../controller.py")).status_code == 404
    assert (await client.get("/dashboard/static/controller.py")).status_code == 404
    schema = (await client.get("/schema/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/dashboard")]


async def test_dashboard_cancels_running_job_from_page(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """Queues, trigger from the jobs page, live progress, cancel: the job ends canceled."""
    from playwright.async_api import expect

    # A few finished jobs, so the queue overview has counts and a throughput chart.
    done = [await trigger(dashboard, args={"steps": 1, "sleep": 0}) for _ in range(3)]
    for job_id in done:
        await wait_final(dashboard, job_id)

    # A second queue, paused: its button resumes it and pauses it again.
    paused = await dashboard.client.post("/api/v1/queues/etl.reports/pause")
    assert paused.status_code == 200, paused.text

    await page.goto(dashboard.url)
    row = page.locator('#queues-table tr[data-queue="etl.default"]')
    await expect(row).to_have_attribute("data-paused", "false")
    await expect(row.locator("svg.chart rect").first).to_be_attached()
    reports = page.locator('#queues-table tr[data-queue="etl.reports"]')
    await expect(reports).to_have_attribute("data-paused", "true")
    await reports.locator("button.resume").click()
    await expect(reports).to_have_attribute("data-paused", "false")
    await reports.locator("button.pause").click()
    await expect(reports).to_have_attribute("data-paused", "true")
    queues = (await dashboard.client.get("/api/v1/queues")).json()["queues"]
    assert {q["queue"]: q["paused"] for q in queues}["etl.reports"] is True
    await page.screenshot(path=screenshot_dir / "01-queues.png", full_page=True)

    await page.click('#nav a[data-route="jobs"]')
    await expect(page.locator("#jobs-table")).to_be_visible()
    await page.click("#trigger-panel > summary")  # collapsed until asked for
    await page.fill("#trigger-lock-key", f"dashboard-{uuid.uuid4().hex[:8]}")
    await page.fill("#trigger-args", LONG_NOOP_ARGS)
    await page.click("#trigger-submit")
    link = page.locator("#trigger-result a.job-link")
    await expect(link).to_be_visible()
    job_id = (await link.inner_text()).strip()
    uuid.UUID(job_id)
    await expect(page.locator(f'#jobs-table tr[data-job-id="{job_id}"]')).to_be_visible()
    await page.screenshot(path=screenshot_dir / "02-jobs.png", full_page=True)

    await link.click()
    await expect(page.locator("#job-status")).to_have_attribute("data-status", "running")
    seen = [await processed(page)]
    for _ in range(2):  # the bar must move at least twice
        await page.wait_for_function(
            "previous => Number(document.querySelector('#job-progress').dataset.processed"
            " || -1) > previous",
            arg=seen[-1],
            timeout=PROGRESS_TIMEOUT_MS,
        )
        seen.append(await processed(page))
    assert seen[0] < seen[1] < seen[2], seen
    bar_value = await page.eval_on_selector("#job-progress", "el => el.value")
    assert bar_value >= seen[2]
    await expect(page.locator("#job-live")).to_have_attribute("data-mode", "live")
    await page.screenshot(path=screenshot_dir / "03-job-running.png", full_page=True)

    await page.click("#job-cancel")
    await expect(page.locator("#job-status")).to_have_attribute(
        "data-status", "canceled", timeout=FINAL_TIMEOUT_MS
    )
    await expect(page.locator('#job-events li[data-event="canceled"]')).to_be_visible()
    await expect(page.locator("#job-cancel")).to_be_disabled()
    await expect(page.locator("#job-retry")).to_be_enabled()
    await page.screenshot(path=screenshot_dir / "04-job-canceled.png", full_page=True)

    stored = (await dashboard.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert stored["status"] == "canceled"
    assert stored["progress"]["processed"] < stored["progress"]["total"]

    # Retry from the page: the job runs again (followed live), and a second cancel ends it.
    await page.click("#job-retry")
    await expect(page.locator('#job-events li[data-event="retried"]')).to_be_visible()
    await expect(page.locator("#job-status")).to_have_attribute("data-status", "running")
    await expect(page.locator("#job-live")).to_have_attribute("data-mode", "live")
    await page.click("#job-cancel")
    await expect(page.locator("#job-status")).to_have_attribute(
        "data-status", "canceled", timeout=FINAL_TIMEOUT_MS
    )
    assert (await dashboard.client.get(f"/api/v1/jobs/{job_id}")).json()["attempt"] == 2


async def test_dashboard_schedules_disable_enable_and_run_now(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    """The schedules page lists a schedule and its buttons change it through the API."""
    from playwright.async_api import expect

    name = f"nightly-{uuid.uuid4().hex[:6]}"
    response = await dashboard.client.post(
        "/api/v1/schedules",
        json={
            "name": name,
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "queue": "etl.default",
            "task": "noop",
            "args": {"steps": 1, "sleep": 0},
            "lock_key": "nightly",
        },
    )
    assert response.status_code == 201, response.text

    await page.goto(f"{dashboard.url}#/schedules")
    row = page.locator(f'#schedules-table tr[data-schedule="{name}"]')
    await expect(row).to_have_attribute("data-enabled", "true")

    await row.locator("button.disable").click()
    await expect(row).to_have_attribute("data-enabled", "false")
    assert (await dashboard.client.get(f"/api/v1/schedules/{name}")).json()["enabled"] is False

    await row.locator("button.enable").click()
    await expect(row).to_have_attribute("data-enabled", "true")
    assert (await dashboard.client.get(f"/api/v1/schedules/{name}")).json()["enabled"] is True

    await row.locator("button.run").click()
    run_link = page.locator("#schedules-message a.job-link")
    await expect(run_link).to_be_visible()
    job_id = (await run_link.inner_text()).strip()
    await expect(row.locator("a.job-link")).to_have_attribute("title", job_id)
    await page.screenshot(path=screenshot_dir / "05-schedules.png", full_page=True)
    job = (await dashboard.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["producer"] == f"dl:schedule:{name}"


async def test_dashboard_jobs_filters_and_next_page(page: Page, dashboard: Dashboard) -> None:
    """Filters reach the API and the keyset "next page" shows the older jobs."""
    from playwright.async_api import expect

    lock_key = f"paging-{uuid.uuid4().hex[:8]}"
    ids = [await trigger(dashboard, lock_key=lock_key, args={"steps": 0}) for _ in range(3)]

    await page.goto(f"{dashboard.url}#/jobs?lock_key={lock_key}&limit=2")
    rows = page.locator("#jobs-table tbody tr")
    await expect(rows).to_have_count(2)
    first_page = [await r.get_attribute("data-job-id") for r in await rows.all()]
    assert first_page == [ids[2], ids[1]]  # newest first

    await page.click("#jobs-next")
    await expect(rows).to_have_count(1)
    assert await rows.first.get_attribute("data-job-id") == ids[0]
    await expect(page.locator("#jobs-next")).to_have_count(0)

    # The filter form: a status nobody has yields an empty page; the hash carries the filter.
    await page.click("#jobs-first")
    await page.check("#filter-status-lost")
    await page.click("#filter-apply")
    await expect(page.locator("#jobs-results .notice")).to_contain_text("No jobs match")
    assert "status=lost" in page.url
    assert f"lock_key={lock_key}" in page.url


async def test_dashboard_shows_job_data_as_text(page: Page, dashboard: Dashboard) -> None:
    """Markup in a job's fields is shown as text, never run or parsed as HTML."""
    from playwright.async_api import expect

    markup = '<img src=x id="injected" onerror="window.__injected = 1">'
    args = {"steps": 0, "note": markup, "result": {"note": markup}}  # noop returns `result`
    job_id = await trigger(dashboard, lock_key=markup, args=args)
    await wait_final(dashboard, job_id)

    await page.goto(f"{dashboard.url}#/jobs/{job_id}")
    await expect(page.locator("#job-status")).to_have_attribute("data-status", "succeeded")
    await expect(page.locator('#job-fields dd[data-field="lock_key"]')).to_have_text(markup)
    await expect(page.locator("#job-args")).to_contain_text(json.dumps(markup))
    await expect(page.locator("#job-result")).to_contain_text(json.dumps(markup))
    await expect(page.locator("#job-result")).to_have_attribute("data-empty", "false")
    await page.goto(f"{dashboard.url}#/jobs?{urlencode({'lock_key': markup})}")
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    assert await page.locator("#injected").count() == 0
    assert await page.evaluate("window.__injected === undefined")
