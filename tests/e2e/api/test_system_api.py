"""Probes and OpenAPI of a running server, with its database up and with it unreachable."""

from __future__ import annotations

import uuid

import httpx

from app import __version__


async def test_health_is_healthy(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


async def test_ready_with_database_is_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_info_names_service_version_environment_uptime(client: httpx.AsyncClient) -> None:
    response = await client.get("/info")

    assert response.status_code == 200
    data = response.json()
    assert data["service"] == "dataloader"
    assert data["version"] == __version__
    assert data["environment"] == "development"
    assert isinstance(data["uptime_sec"], int | float)
    assert data["uptime_sec"] >= 0


async def test_openapi_lists_the_job_routes(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "post" in paths["/api/v1/jobs/trigger"]
    assert "get" in paths["/api/v1/jobs/{job_id}/status"]
    assert "post" in paths["/api/v1/jobs/{job_id}/cancel"]


async def test_unreachable_database_health_is_still_healthy(
    dead_db_client: httpx.AsyncClient,
) -> None:
    response = await dead_db_client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


async def test_unreachable_database_ready_is_503(dead_db_client: httpx.AsyncClient) -> None:
    response = await dead_db_client.get("/ready")

    assert response.status_code == 503
    assert response.json()["status"] != "ready"


async def test_unreachable_database_job_routes_are_503(dead_db_client: httpx.AsyncClient) -> None:
    job_id = uuid.uuid4()

    trigger = await dead_db_client.post(
        "/api/v1/jobs/trigger", json={"queue": "etl.api", "task": "noop", "lock_key": "k"}
    )
    status = await dead_db_client.get(f"/api/v1/jobs/{job_id}/status")
    cancel = await dead_db_client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert trigger.status_code == 503
    assert status.status_code == 503
    assert cancel.status_code == 503
    assert trigger.json()["detail"]
