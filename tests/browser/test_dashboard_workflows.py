"""The workflow page: a DAG drawn with its steps and edges, coloured by status and redrawn
live as a worker runs it; Cancel ends the steps that have not run. Screenshots:
test-output/dashboard/workflow-*.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.dashboard import Dashboard

if TYPE_CHECKING:
    from playwright.async_api import Page

WORKER_QUEUE = "etl.default"  # the module worker's queue (tests/browser/conftest.py)


async def create(dashboard: Dashboard, queue: str, sleep: float = 0.0) -> dict[str, Any]:
    """A diamond over the API; its answer."""

    def step(name: str, *parents: str) -> dict[str, Any]:
        job = {"queue": queue, "task": "noop", "lock_key": uuid.uuid4().hex}
        job["args"] = {"steps": 2, "sleep": sleep}
        return {"name": name, "job": job, "depends_on": list(parents)}

    body = {
        "name": "dash-diamond",
        "steps": [
            step("extract"),
            step("left", "extract"),
            step("right", "extract"),
            step("load", "left", "right"),
        ],
    }
    response = await dashboard.client.post("/api/v1/workflows", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_dashboard_draws_a_workflow_and_follows_it_live(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    from playwright.async_api import expect

    created = await create(dashboard, WORKER_QUEUE, sleep=0.5)

    await page.goto(f"{dashboard.url}#/workflows/{created['workflow_id']}")
    graph = page.locator("#workflow-graph")
    await expect(graph.locator("rect.node")).to_have_count(4)
    await expect(graph.locator("path.edge")).to_have_count(4)
    await expect(graph.locator('path.edge[data-from="left"][data-to="load"]')).to_have_count(1)
    await page.screenshot(path=str(screenshot_dir / "workflow-running.png"), full_page=True)
    await expect(graph.locator("rect.node.succeeded")).to_have_count(4, timeout=30_000)
    await expect(page.locator("#workflow-status .badge")).to_have_text("succeeded")
    await expect(page.locator("#workflow-live")).to_have_text("done")
    await page.screenshot(path=str(screenshot_dir / "workflow-succeeded.png"), full_page=True)

    # The job page links back to its workflow.
    await graph.locator('a[data-step="load"]').click()
    await expect(page.locator("#job-fields")).to_contain_text("(step load)")
    await page.locator(f'#job-fields a[href="#/workflows/{created["workflow_id"]}"]').click()
    await expect(page.locator("#workflow-graph rect.node")).to_have_count(4)


async def test_dashboard_cancels_a_workflow_from_its_page(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    from playwright.async_api import expect

    created = await create(dashboard, f"etl.idle.{uuid.uuid4().hex[:6]}")  # no worker serves it

    await page.goto(f"{dashboard.url}#/workflows/{created['workflow_id']}")
    graph = page.locator("#workflow-graph")
    await expect(graph.locator("rect.node.waiting")).to_have_count(3)
    await expect(graph.locator("rect.node.queued")).to_have_count(1)
    await page.click("#workflow-cancel")

    await expect(graph.locator("rect.node.canceled")).to_have_count(4)
    await expect(page.locator("#workflow-message .notice")).to_contain_text("4 step(s) canceled")
    await page.screenshot(path=str(screenshot_dir / "workflow-canceled.png"), full_page=True)


async def test_dashboard_lists_the_newest_workflows_linking_to_each(
    page: Page, dashboard: Dashboard, screenshot_dir: Path
) -> None:
    from playwright.async_api import expect

    created = await create(dashboard, f"etl.idle.{uuid.uuid4().hex[:6]}")  # no worker serves it
    workflow_id = created["workflow_id"]

    await page.goto(f"{dashboard.url}#/workflows")
    row = page.locator(f'#workflow-table tr[data-workflow="{workflow_id}"]')
    await expect(row).to_contain_text("dash-diamond")
    await expect(row.locator(".badge").first).to_have_text("active")
    await expect(row).to_contain_text("queued 1")
    await expect(row).to_contain_text("waiting 3")
    await page.screenshot(path=str(screenshot_dir / "workflow-list.png"), full_page=True)

    await row.locator(f'a[href="#/workflows/{workflow_id}"]').click()
    await expect(page.locator("#workflow-graph rect.node")).to_have_count(4)
