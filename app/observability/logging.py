"""Structured logs for the API and the worker: structlog over the standard library.

Every line, ours and the libraries' (uvicorn, pgqueuer, SQLAlchemy), goes through one
structlog `ProcessorFormatter` on the root handler, so all of them share a format:
LOG_FORMAT=json (the default: one JSON object a line) or console (for people; `make run`).
Each line carries the process's id (`worker_id` in a worker, `instance_id` in the API),
whatever was bound with `structlog.contextvars` (the runner binds `job_id`, `attempt`,
`queue` and `task` for the length of an attempt) and any `extra={...}` of a stdlib call.
Secrets are masked on every line (see app.observability.masking).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from app.observability.masking import MASK, Masker, mask_url_passwords
from app.settings import Settings

# Keys printed first in a JSON line, in this order; the rest follow as logged.
_LEADING_KEYS = ("timestamp", "level", "worker_id", "instance_id", "logger", "event")
# Attributes some libraries pass in `extra` that are only noise in a structured line.
_NOISE_KEYS = ("color_message",)
# Keys holding free text, where only passwords inside URLs are masked.
_TEXT_KEYS = frozenset({"event", "exception", "stack"})


def instance_id(worker_id: str | None) -> str:
    """WORKER_ID when set, else host name and this process's pid."""
    return worker_id or f"{socket.gethostname()}-{os.getpid()}"


class _MaskSecrets:
    """Masks secret keys anywhere in the event and passwords inside URLs in its text."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        for key, value in list(event.items()):
            if key.startswith("_"):
                continue
            if key in _TEXT_KEYS:
                if isinstance(value, str):
                    event[key] = mask_url_passwords(value)
            elif self.masker.is_secret(key):
                event[key] = MASK
            else:
                event[key] = self.masker.mask(value)
        return event


class _MaskForeignArgs:
    """Renders a stdlib record's message again with its arguments masked.

    `logger.info("args %s", args)` formats the dict into the text before any processor sees
    it, so the text is rebuilt from the format string and masked arguments. uvicorn's
    access lines get secret query parameters masked in their path.
    """

    def __init__(self, masker: Masker) -> None:
        self.masker = masker

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        args = event.pop("positional_args", None)
        record = event.get("_record")
        if not args or not isinstance(record, logging.LogRecord):
            return event
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            args = (args[0], args[1], self.masker.mask_query(str(args[2])), args[3], args[4])
        masked = self.masker.mask(args)
        if masked != args or record.name == "uvicorn.access":
            # A format that does not fit its arguments keeps the text logging made.
            with contextlib.suppress(TypeError, ValueError, KeyError):
                event["event"] = str(record.msg) % masked
        return event


def _drop_noise(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    for key in _NOISE_KEYS:
        event.pop(key, None)
    return event


def _static_fields(fields: Mapping[str, str]) -> Processor:
    """Adds fields that hold for the whole process (a bound value of the same name wins)."""

    def add(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        for key, value in fields.items():
            event.setdefault(key, value)
        return event

    return add


def _leading_keys_first(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    ordered = {key: event.pop(key) for key in _LEADING_KEYS if key in event}
    ordered.update(event)
    return ordered


def _id_in_front(id_field: str) -> Processor:
    """Console lines: `[w1] message` in place of a `worker_id=w1` column."""

    def move(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        ident = event.pop(id_field, None)
        event.pop("process", None)
        if ident is not None:
            event["event"] = f"[{ident}] {event.get('event', '')}"
        return event

    return move


def _shared_processors(
    log_format: str, fields: Mapping[str, str], masker: Masker
) -> tuple[list[Processor], list[Processor]]:
    """(chain for stdlib records, chain for structlog's own loggers), both before rendering."""
    timestamper = (
        structlog.processors.TimeStamper(fmt="iso", utc=True)
        if log_format == "json"
        else structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False)
    )
    common: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
    ]
    foreign: list[Processor] = [
        *common,
        structlog.stdlib.ExtraAdder(),
        _drop_noise,
        _MaskForeignArgs(masker),
        _static_fields(fields),
        timestamper,
    ]
    native: list[Processor] = [
        structlog.stdlib.filter_by_level,
        *common,
        structlog.stdlib.PositionalArgumentsFormatter(),
        _static_fields(fields),
        timestamper,
        structlog.processors.StackInfoRenderer(),
    ]
    return foreign, native


def build_formatter(
    *,
    process: str,
    ident: str,
    id_field: str,
    log_format: str,
    mask_keys: Sequence[str] = (),
) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter of a process; also configures structlog's own loggers to use it."""
    masker = Masker(mask_keys)
    fields = {"process": process, id_field: ident}
    foreign, native = _shared_processors(log_format, fields, masker)
    renderer: list[Processor]
    if log_format == "console":
        renderer = [
            _id_in_front(id_field),
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(),
                exception_formatter=structlog.dev.plain_traceback,
            ),
        ]
    else:
        renderer = [_leading_keys_first, structlog.processors.JSONRenderer(default=str)]
    structlog.configure(
        processors=[*native, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign,
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _MaskSecrets(masker),
            *renderer,
        ],
    )


def configure_logging(settings: Settings, *, process: str, ident: str, id_field: str) -> None:
    """Send every log record of this process to stderr through the structlog formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        build_formatter(
            process=process,
            ident=ident,
            id_field=id_field,
            log_format=settings.log_format,
            mask_keys=settings.dl_log_mask_keys,
        )
    )
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    # `pgq run` gives the pgqueuer logger handlers of its own, which would print every
    # pgqueuer line a second time in another format; the root handler prints them.
    pgqueuer = logging.getLogger("pgqueuer")
    for own in list(pgqueuer.handlers):
        if not isinstance(own, logging.NullHandler):
            pgqueuer.removeHandler(own)


def api_formatter(
    worker_id: str | None, log_format: str, mask_keys: Sequence[str]
) -> structlog.stdlib.ProcessorFormatter:
    """dictConfig factory: runs in each uvicorn process, so the instance id has its pid."""
    return build_formatter(
        process="api",
        ident=instance_id(worker_id),
        id_field="instance_id",
        log_format=log_format,
        mask_keys=mask_keys,
    )


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging: every logger through the root handler and the structlog formatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": "app.observability.logging.api_formatter",
                "worker_id": settings.worker_id,
                "log_format": settings.log_format,
                "mask_keys": list(settings.dl_log_mask_keys),
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "stream": "ext://sys.stderr",
            }
        },
        # uvicorn's loggers print nothing themselves: their records reach the root handler.
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level},
    }
