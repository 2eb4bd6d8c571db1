"""The one dependency factory: handlers receive the objects made at start-up, kept on app.state."""

from __future__ import annotations

from typing import Any

from litestar.datastructures import State
from litestar.di import Provide


def from_state(*names: str) -> dict[str, Provide]:
    """Controller `dependencies` handing out `app.state.<name>` under the same name.

    app.asgi's lifespan sets each attribute once; a handler asks for one by naming it
    (`job_service: NamedDependency[JobService]`).
    """
    return {name: _provide(name) for name in names}


def _provide(name: str) -> Provide:
    def provider(state: State) -> Any:
        return getattr(state, name)

    return Provide(provider, sync_to_thread=False)
