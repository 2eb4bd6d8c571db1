"""The dashboard against an API that requires tokens: a clear message, then the token field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from tests.support.api_servers import ApiServer, start_api_server, stop_api_server
from tests.support.dashboard import EXPECT_TIMEOUT_MS
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name

if TYPE_CHECKING:
    from playwright.async_api import Browser

READ_TOKEN = "dashboard-reader-token"


@pytest.fixture(scope="module")
async def guarded_api(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """An API with one read token, no worker."""
    name = unique_name("dl_dash_auth")
    dsn = await create_database(pg_server, name, template=template_db)
    tokens = [{"name": "viewer", "token": READ_TOKEN, "scopes": ["read"]}]
    api = await start_api_server(
        dsn,
        tmp_path_factory.mktemp("dash_auth") / "api.log",
        extra_env={"API_TOKENS_JSON": json.dumps(tokens)},
    )
    try:
        yield api
    finally:
        stop_api_server(api)
        await drop_database(pg_server, name)


async def test_dashboard_asks_for_a_token_then_uses_it(
    browser: Browser, guarded_api: ApiServer
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(f"{guarded_api.base_url}/dashboard")
        alert = page.locator(".notice.error").first
        await expect(alert).to_contain_text("API token required")
        await page.fill("#token-input", "not-the-token-at-all")
        await page.press("#token-input", "Enter")
        await expect(page.locator(".notice.error").first).to_contain_text("API token rejected")
        await page.fill("#token-input", READ_TOKEN)
        await page.press("#token-input", "Enter")
        await expect(page.locator("main")).to_contain_text("No queues yet")
        await expect(page.locator(".notice.error")).to_have_count(0)
    finally:
        await context.close()
    assert not errors, errors
