"""Tracing's rules in memory: when OTEL_* turns it on, what a job stores, an attempt's span."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.db.jobs import _insert_statement
from app.domain.attempts import StartedAttempt
from app.observability import tracing
from app.observability.tracing import (
    TracingConfigError,
    current_trace_context,
    stored_context,
    tracing_requested,
)
from worker.attempt_trace import attempt_span

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),  # the default: off
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
    ],
)
def test_tracing_requested_follows_the_otel_variables(environ: dict[str, str], on: bool) -> None:
    assert tracing_requested(environ) is on


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        ({"OTEL_TRACES_EXPORTER": "jaeger-thrift"}, "jaeger-thrift"),
    ],
)
def test_exporters_refuse_what_is_not_installed(environ: dict[str, str], named: str) -> None:
    with pytest.raises(TracingConfigError, match=named):
        tracing._exporters(environ)


def test_current_trace_context_is_none_outside_a_span() -> None:
    assert current_trace_context() is None


def test_current_trace_context_names_the_current_span(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = memory
    with provider.get_tracer("t").start_as_current_span("caller") as span:
        context = current_trace_context()
    assert context is not None
    ids = span.get_span_context()
    assert context.traceparent.split("-")[1:3] == [f"{ids.trace_id:032x}", f"{ids.span_id:016x}"]
    assert context.tracestate is None


def test_stored_context_ignores_what_is_not_a_traceparent() -> None:
    assert stored_context(None, None) is None
    assert stored_context("00-not-a-traceparent", "a=b") is None
    assert stored_context(PARENT, None) is not None


def test_untraced_insert_is_the_statement_without_trace_columns() -> None:
    """Off, the job insert sends what it sent before traces existed."""
    untraced = str(_insert_statement("public"))
    traced = str(_insert_statement("public", traced=True))
    assert "trace" not in untraced
    assert "traceparent" in traced
    assert "tracestate" in traced


def started(traceparent: str | None = PARENT) -> StartedAttempt:
    return StartedAttempt(
        job_id=uuid.uuid4(),
        queue="etl.default",
        task="noop",
        args={},
        lock_key="k",
        priority=100,
        attempt=2,
        max_attempts=5,
        lease_ttl_sec=60,
        traceparent=traceparent,
        tracestate="vendor=1" if traceparent else None,
    )


def test_attempt_span_is_a_consumer_child_of_the_stored_context(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = memory
    attempt = started()
    with attempt_span(provider.get_tracer("t"), attempt, "w1") as span:
        span.end_with("succeeded", None, None)

    (finished,) = exporter.get_finished_spans()
    assert (finished.name, finished.kind) == ("job noop", SpanKind.CONSUMER)
    assert finished.parent is not None
    assert f"{finished.parent.trace_id:032x}-{finished.parent.span_id:016x}" == (
        "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
    )
    assert finished.context is not None
    assert finished.context.trace_state.to_header() == "vendor=1"
    assert dict(finished.attributes or {}) == {
        "dataloader.job.id": str(attempt.job_id),
        "dataloader.job.queue": "etl.default",
        "dataloader.job.task": "noop",
        "dataloader.job.attempt": 2,
        "dataloader.job.max_attempts": 5,
        "dataloader.worker.id": "w1",
        "dataloader.job.outcome": "succeeded",
    }
    assert finished.status.status_code is StatusCode.UNSET


def test_attempt_span_of_a_failure_records_the_error(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = memory
    error = RuntimeError("boom")
    with attempt_span(provider.get_tracer("t"), started(None), "w1") as span:
        span.end_with("retried", error, "RuntimeError: boom")

    (finished,) = exporter.get_finished_spans()
    assert finished.parent is None  # nothing stored: the attempt starts its own trace
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "RuntimeError: boom"
    assert [event.name for event in finished.events] == ["exception"]
    assert (finished.attributes or {})["dataloader.job.outcome"] == "retried"


def test_attempt_span_without_a_tracer_makes_nothing() -> None:
    with attempt_span(None, started(), "w1") as span:
        assert span.span is None
        span.end_with("failed", RuntimeError("x"), "x")  # a no-op
