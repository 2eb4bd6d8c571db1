"""The dashboard under test in the browser tier: its API, its worker and their logs."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tests.support.api_servers import ApiServer
from tests.support.workers import WorkerFleet

EXPECT_TIMEOUT_MS = 10_000  # Playwright's expect(); a loaded CI machine answers slowly at times


@dataclass
class Dashboard:
    """The API under test, the workers serving its database and a client for set-up."""

    api: ApiServer
    fleet: WorkerFleet
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        """The dashboard's address."""
        return f"{self.api.base_url}/dashboard"

    def diagnostics(self) -> str:
        """Server and worker logs, for failure messages."""
        return f"--- api ---\n{self.api.log_tail()}\n{self.fleet.diagnostics()}"
