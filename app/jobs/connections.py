"""The worker's side of the connection plan (app.db.connections), reached through the jobs layer.

The worker never imports app.db: it opens its pools and direct connections through these
names, which keep the plan's purposes and application_names.
"""

from __future__ import annotations

from app.db.connections import (
    connect_finish_writer,
    connect_leader,
    connect_lock_session,
    connect_pgqueuer,
    maintenance_pool,
    worker_pool,
)

__all__ = [
    "connect_finish_writer",
    "connect_leader",
    "connect_lock_session",
    "connect_pgqueuer",
    "maintenance_pool",
    "worker_pool",
]
