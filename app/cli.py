"""Server-side commands: `python -m app run | serve | migrate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.observability.logging import uvicorn_log_config
from app.observability.tracing import tracing_or_exit
from app.settings import Settings, settings_or_exit


def serve(settings: Settings, workers: int | None = None) -> int:
    """Serve the HTTP API with uvicorn, in `workers` processes sharing the port."""
    import uvicorn

    from app.asgi import create_app
    from app.http.edge.protocol import HeadLimits, edge_protocol

    workers = workers or settings.app_workers
    # A bad OTEL_* value stops the server here with one line, not each process's traceback.
    tracing_or_exit("dataloader", "dataloader-api")
    # Several processes each build their own app (and engine) from the environment.
    target: Any = create_app(settings) if workers == 1 else "app.asgi:create_app"
    uvicorn.run(
        target,
        factory=workers > 1,
        workers=workers,
        host=settings.app_host,
        port=settings.app_port,
        log_level=settings.log_level.lower(),
        access_log=settings.app_access_log,
        log_config=uvicorn_log_config(settings),
        timeout_graceful_shutdown=10,
        # The HTTP edge (docs/security.md#http-edge): httptools with a head size cap and a
        # head-read deadline, and uvicorn's own idle keep-alive timeout.
        http=edge_protocol(
            HeadLimits(
                header_max_bytes=settings.app_header_max_bytes,
                header_timeout_sec=settings.app_header_timeout_sec,
            )
        ),
        timeout_keep_alive=settings.app_keepalive_timeout_sec,  # type: ignore[arg-type]
    )
    return 0


def refuse_open_exposure(settings: Settings) -> str | None:
    """Why the API must not start: no API_TOKENS_JSON on an address others can reach."""
    if settings.api_tokens_json or settings.api_tokens_file or settings.host_is_loopback:
        return None
    return (
        f"dataloader: refusing to serve on APP_HOST={settings.app_host} without API_TOKENS_JSON;"
        " set tokens (or API_TOKENS_FILE) or bind to 127.0.0.1"
    )


def invalid_token_file(settings: Settings) -> str | None:
    """Why API_TOKENS_FILE cannot be used at start (later, a bad file keeps the last tokens)."""
    if not settings.api_tokens_file:
        return None
    from app.http.token_file import TokenFileError, read_token_file

    try:
        read_token_file(Path(settings.api_tokens_file))
    except TokenFileError as exc:
        return f"dataloader: invalid API_TOKENS_FILE: {exc}"
    return None


def busy_app_port(settings: Settings) -> str | None:
    """Why the API cannot listen: another process holds APP_HOST:APP_PORT."""
    from app.devserver.ports import port_in_use

    if not port_in_use(settings.app_host, settings.app_port):
        return None
    return (
        f"dataloader: APP_PORT {settings.app_port} on {settings.app_host} is in use;"
        " stop what listens there or set APP_PORT to a free port"
    )


def migrate(settings: Settings) -> int:
    """Apply every pending Alembic migration."""
    from app.db.migrate import upgrade_to_head

    upgrade_to_head(settings.session_sqlalchemy_url, settings.pg_schema_queue)
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
    if args.command in ("serve", "run") and (
        refusal := refuse_open_exposure(settings) or invalid_token_file(settings)
    ):
        print(refusal, file=sys.stderr)
        return 2
    if args.command in ("serve", "run"):
        # Before anything starts: a module that does not import is one line, not a
        # traceback from each process that would import it.
        from app.pipelines.loading import pipelines_or_exit

        pipelines_or_exit("dataloader", settings.dl_pipeline_modules)
        if busy := busy_app_port(settings):
            print(busy, file=sys.stderr)
            return 2
    if args.command == "serve":
        return serve(settings, args.workers)
    if args.command == "migrate":
        return migrate(settings)
    return run(settings, args.workers)
