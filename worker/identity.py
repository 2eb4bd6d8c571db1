"""The worker's id: WORKER_ID, or host name plus pid."""

from __future__ import annotations

import os
import socket

from app.settings import Settings


def worker_id(settings: Settings) -> str:
    """The id stored on the jobs this process runs and printed in its logs."""
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
