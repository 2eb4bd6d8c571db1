"""The structlog formatter both processes use: JSON fields, bound context, masking."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from app.observability.logging import build_formatter
from app.settings import SettingsError, load_settings


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose one handler writes through a JSON formatter for worker w1."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        build_formatter(
            process="worker",
            ident="w1",
            id_field="worker_id",
            log_format="json",
            mask_keys=["iban"],
        )
    )
    logger = logging.getLogger(f"test.log_format.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_format_json_line_has_process_id_bound_fields_and_extras(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    with structlog.contextvars.bound_contextvars(job_id="j-1", attempt=2, queue="q", task="t"):
        logger.info("attempt ended: %s", "succeeded", extra={"lock_key": "customer:1"})
    logger.info("outside")

    first, second = lines(stream)
    assert first["event"] == "attempt ended: succeeded"
    assert first["level"] == "info"
    assert first["worker_id"] == "w1"
    assert first["process"] == "worker"
    assert (first["job_id"], first["attempt"], first["queue"], first["task"]) == (
        "j-1",
        2,
        "q",
        "t",
    )
    assert first["lock_key"] == "customer:1"
    assert first["timestamp"].endswith("Z")
    assert list(first)[:5] == ["timestamp", "level", "worker_id", "logger", "event"]
    assert "job_id" not in second, "the binding ends with its block"


def test_log_format_masks_extras_formatted_args_urls_and_tracebacks(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info(
        "calling with %s and %s",
        {"password": "hunter2", "user": "ann"},
        "postgresql://app:dbpass@db/x",
        extra={"headers": {"Authorization": "Bearer tok"}, "customer_iban": "DE00", "token": "t"},
    )
    try:
        raise RuntimeError("cannot reach amqp://guest:mqpass@mq/")
    except RuntimeError:
        logger.exception("failed")

    text = stream.getvalue()
    for secret in ("hunter2", "dbpass", "Bearer tok", "DE00", "mqpass"):
        assert secret not in text
    first, second = lines(stream)
    assert first["event"] == (
        "calling with {'password': '***', 'user': 'ann'} and postgresql://app:***@db/x"
    )
    assert first["headers"] == {"Authorization": "***"}
    assert first["customer_iban"] == "***"
    assert first["token"] == "***"
    assert "RuntimeError: cannot reach amqp://guest:***@mq/" in second["exception"]


def test_log_format_masks_secret_query_parameters_in_uvicorn_access_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        build_formatter(process="api", ident="api-1", id_field="instance_id", log_format="json")
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/api/v1/jobs?api_key=k1&status=failed", "1.1", 200),
        None,
    )
    handler.handle(record)

    [line] = lines(stream)
    assert (
        line["event"]
        == '127.0.0.1:5000 - "GET /api/v1/jobs?api_key=***&status=failed HTTP/1.1" 200'
    )
    assert line["instance_id"] == "api-1"


def test_log_format_console_puts_the_id_in_front() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        build_formatter(process="worker", ident="w7", id_field="worker_id", log_format="console")
    )
    handler.handle(
        logging.LogRecord("worker", logging.INFO, __file__, 1, "serving %s", ("q",), None)
    )

    text = stream.getvalue()
    assert "[w7] serving q" in text
    assert "[info" in text


def test_log_settings_accept_either_case_and_name_a_bad_value() -> None:
    settings = load_settings(log_format="Console", log_level="debug")

    assert (settings.log_format, settings.log_level) == ("console", "DEBUG")
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings(log_format="xml")
    with pytest.raises(SettingsError, match="LOG_LEVEL"):
        load_settings(log_level="loud")
