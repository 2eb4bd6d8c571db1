"""/dashboard: the web dashboard, static files that talk to the JSON API only."""

from __future__ import annotations

from pathlib import Path

from litestar import Controller, MediaType, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.response import File
from litestar.static_files import create_static_files_router

from app.http.auth import requires

# Only static/ is served: the package's Python files sit one level up.
DASHBOARD_DIR = Path(__file__).resolve().parent / "static"
DASHBOARD_PATH = "/dashboard"
STATIC_PATH = f"{DASHBOARD_PATH}/static"
# The files change with each release and are tiny: revalidate rather than serve a stale UI.
NO_CACHE = CacheControlHeader(no_cache=True)


class DashboardController(Controller):
    """The dashboard's page; its scripts and styles come from the static router."""

    path = DASHBOARD_PATH
    include_in_schema = False
    cache_control = NO_CACHE

    # The page and its files hold no data; the API calls they make need a token.
    @get(["/", "/index.html"], media_type=MediaType.HTML, opt=requires("open"))
    async def index(self) -> File:
        """The single page; hash routing (#/queues, #/jobs, ...) happens in the browser."""
        return File(
            path=DASHBOARD_DIR / "index.html",
            media_type=MediaType.HTML,
            content_disposition_type="inline",
        )


def dashboard_static_router() -> Router:
    """Serves dashboard.js, dashboard.css under /dashboard/static/."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[DASHBOARD_DIR],
        name="dashboard_static",
        cache_control=NO_CACHE,
        include_in_schema=False,
        opt=requires("open"),
    )
