"""Fixtures for the dashboard's browser tests: a real API, a real worker, Debian's chromium.

Chromium comes from the distribution (`apt-get install chromium`), never from Playwright's
own download. Without it the browser tests skip, unless DL_REQUIRE_BROWSER=1 (CI sets it),
in which case they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.api_servers import start_api_server, stop_api_server
from tests.support.dashboard import EXPECT_TIMEOUT_MS, Dashboard
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name
from tests.support.paths import PROJECT_ROOT
from tests.support.workers import worker_fleet

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

SCREENSHOT_DIR = PROJECT_ROOT / "test-output" / "dashboard"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Saved often, so the progress bar has something to show several times a second.
WORKER_ENV = {"DL_HEARTBEAT_SEC": "0.3"}


def _missing_browser(reason: str) -> None:
    """Skip, or fail when the run demands the browser tests (DL_REQUIRE_BROWSER=1)."""
    if os.environ.get("DL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and DL_REQUIRE_BROWSER=1 requires the browser tests to run")
    pytest.skip(f"{reason}: apt-get install chromium (CI installs it, DL_REQUIRE_BROWSER=1)")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium binary."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _missing_browser("chromium is not installed")
    assert path is not None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _missing_browser("Playwright for Python is not installed (`make install-dev`)")
    return path


@pytest.fixture(scope="module")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    """A headless chromium shared by one test module."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="module")
async def dashboard(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Dashboard]:
    """A real API process and one real worker on a fresh database, shared by a module."""
    log_dir = tmp_path_factory.mktemp("dashboard")
    name = unique_name("dl_dash")
    dsn = await create_database(pg_server, name, template=template_db)
    api = await start_api_server(dsn, log_dir / "api.log")
    try:
        with worker_fleet(PROJECT_ROOT, dsn, log_dir / "workers", env=WORKER_ENV) as fleet:
            await fleet.start_ready("dash-1", queues={"etl.default": 4})
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
                yield Dashboard(api=api, fleet=fleet, client=client)
    finally:
        stop_api_server(api)
        await drop_database(pg_server, name)


@pytest.fixture
async def page(browser: Browser, dashboard: Dashboard) -> AsyncIterator[Page]:
    """A fresh browser tab; fails the test when the page threw a JavaScript error."""
    from playwright.async_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The dashboard runs under its Content-Security-Policy (docs/security.md#http-edge): an
    # inline style or script it blocked is a bug, though the page would throw nothing.
    page.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}\n{dashboard.diagnostics()}"


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """test-output/dashboard/ at the repository root (git-ignored)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
