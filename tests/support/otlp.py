"""A local OTLP/HTTP receiver for tests: the spans processes exported, decoded.

It is a RecordingHttpServer (tests/support/local_servers.py): the exporter POSTs protobuf
`ExportTraceServiceRequest`s to /v1/traces, and `spans()` decodes what arrived.
`otlp_env()` is what turns a process's tracing on and points it here.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus

from tests.support.local_servers import RecordingHttpServer

TRACES_PATH = "/v1/traces"
KIND_NAMES = {
    ProtoSpan.SPAN_KIND_INTERNAL: "internal",
    ProtoSpan.SPAN_KIND_SERVER: "server",
    ProtoSpan.SPAN_KIND_CLIENT: "client",
    ProtoSpan.SPAN_KIND_PRODUCER: "producer",
    ProtoSpan.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span: ids as hex, as a traceparent writes them."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    error: bool
    status_message: str
    events: tuple[str, ...]


def otlp_env(receiver: RecordingHttpServer) -> dict[str, str]:
    """Tracing on, exporting to `receiver` within a tenth of a second of a span's end."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def spans(receiver: RecordingHttpServer) -> list[ReceivedSpan]:
    """Every span `receiver` was sent so far, in the order they arrived."""
    found: list[ReceivedSpan] = []
    for request in receiver.requests_to(TRACES_PATH):
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                found.extend(
                    _span(str(resource.get("service.name", "")), span) for span in scope_spans.spans
                )
    return found


def _span(service: str, span: ProtoSpan) -> ReceivedSpan:
    return ReceivedSpan(
        service=service,
        name=span.name,
        kind=KIND_NAMES.get(span.kind, "unspecified"),
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        attributes=_attributes(span.attributes),
        error=span.status.code == ProtoStatus.STATUS_CODE_ERROR,
        status_message=span.status.message,
        events=tuple(event.name for event in span.events),
    )


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)
