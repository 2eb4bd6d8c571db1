"""Server-side commands: `python -m app run | serve | migrate`."""

from __future__ import annotations

import argparse
import copy
import logging
import os
import socket
import sys
from typing import Any

from app.settings import Settings, settings_or_exit


class InstanceIdFilter(logging.Filter):
    """Gives each record `instance_id`: WORKER_ID, else host name and this process's pid."""

    def __init__(self, worker_id: str | None = None) -> None:
        super().__init__()
        # Built in each API process when uvicorn configures its logging, so the pid is its own.
        self.instance_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the id; never drops a record."""
        record.instance_id = self.instance_id
        return True


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's own log configuration with the instance id in every line it prints."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "instance_id": {"()": "app.cli.InstanceIdFilter", "worker_id": settings.worker_id}
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["instance_id"]
    for formatter in config["formatters"].values():
        formatter["fmt"] = formatter["fmt"].replace(
            "%(levelprefix)s ", "%(levelprefix)s [%(instance_id)s] ", 1
        )
    return config


def serve(settings: Settings, workers: int | None = None) -> int:
    """Serve the HTTP API with uvicorn, in `workers` processes sharing the port."""
    import uvicorn

    from app.asgi import create_app

    workers = workers or settings.app_workers
    # Several processes each build their own app (and engine) from the environment.
    target: Any = create_app(settings) if workers == 1 else "app.asgi:create_app"
    uvicorn.run(
        target,
        factory=workers > 1,
        workers=workers,
        host=settings.app_host,
        port=settings.app_port,
        log_level="info",
        access_log=settings.app_access_log,
        log_config=uvicorn_log_config(settings),
        timeout_graceful_shutdown=10,
    )
    return 0


def migrate(settings: Settings) -> int:
    """Apply every pending Alembic migration."""
    from app.db.migrate import upgrade_to_head

    upgrade_to_head(settings.sqlalchemy_url, settings.pg_schema_queue)
    return 0


def run(settings: Settings, workers: int) -> int:
    """Embedded PostgreSQL if needed, migrations, the API and the workers."""
    from app.devserver.supervisor import Supervisor

    return Supervisor(settings, worker_count=workers).run()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the HTTP API")
    serve_parser.add_argument(
        "--workers", type=int, default=None, help="API processes (default APP_WORKERS, 1)"
    )
    commands.add_parser("migrate", help="apply database migrations")
    run_parser = commands.add_parser("run", help="run everything for development")
    run_parser.add_argument("--workers", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    settings = settings_or_exit("dataloader")
    if args.command in ("serve", "migrate") and not settings.has_database:
        print(
            "dataloader: set DATABASE_URL (or PG_HOST); `make run` starts an embedded PostgreSQL",
            file=sys.stderr,
        )
        return 2
    if args.command == "serve":
        return serve(settings, args.workers)
    if args.command == "migrate":
        return migrate(settings)
    return run(settings, args.workers)
