"""The worker's logging: every line names the worker that wrote it."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s [%(worker_id)s] %(name)s %(message)s"


class WorkerIdFilter(logging.Filter):
    """Gives each record a `worker_id` attribute (one passed in `extra` is kept)."""

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the id; never drops a record."""
        if not hasattr(record, "worker_id"):
            record.worker_id = self.worker_id
        return True


def configure_logging(worker_id: str, level: int = logging.INFO) -> None:
    """Log to stderr at `level`, each line with `worker_id`, pgqueuer's lines included."""
    handler = logging.StreamHandler()
    # On the handler, not a logger: a logger's filters skip records propagated from children.
    handler.addFilter(WorkerIdFilter(worker_id))
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # `pgq run` gives the pgqueuer logger handlers of its own, which print every pgqueuer
    # line a second time, without the id; the root handler above already prints them.
    pgqueuer = logging.getLogger("pgqueuer")
    for own in list(pgqueuer.handlers):
        if not isinstance(own, logging.NullHandler):
            pgqueuer.removeHandler(own)
