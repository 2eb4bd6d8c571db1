"""Pipelines that only tests register."""

from __future__ import annotations

from typing import Any

from app.pipelines.registry import pipeline


@pipeline("test.echo")
async def echo(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Return the args unchanged."""
    return args
