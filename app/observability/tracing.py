"""Traces (OpenTelemetry): off unless OTEL_* variables turn them on; a trigger's W3C context.

A process turns tracing on at start (`configure_tracing`) when the standard variables ask
for it: OTEL_TRACES_EXPORTER names an exporter other than `none`, or, without it,
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; OTEL_SDK_DISABLED
=true keeps it off whatever else is set. Everything else (sampler, batch sizes, the OTLP
endpoint, headers and timeout, the service name and resource attributes, the propagators)
is the SDK's own reading of OTEL_*. Off, no provider is made and `tracer()` is None: the API
adds no middleware, the worker makes no span, and no job stores a context.

A job stores the context of the span current where it was triggered (`current_trace_context`);
an application that set OpenTelemetry up itself gets its own spans stored by
`enqueue_in_session` without any OTEL_ variable.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger("app.observability.tracing")

TRACER_NAME = "dataloader"
# The only OTLP protocol installed (opentelemetry-exporter-otlp-proto-http).
OTLP_PROTOCOL = "http/protobuf"
# The W3C format whatever OTEL_PROPAGATORS says: what is stored must be readable by every
# worker, and the column names say what it is.
_W3C = TraceContextTextMapPropagator()


class TracingConfigError(Exception):
    """The OTEL_* variables ask for something this installation cannot do."""


@dataclass(frozen=True)
class TraceContext:
    """The W3C trace context of a job's trigger, as stored with the job."""

    traceparent: str
    tracestate: str | None = None


def current_trace_context() -> TraceContext | None:
    """The caller's current span as W3C headers; None outside a valid span (tracing off).

    Off, this is one context lookup: the current span is the invalid default.
    """
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return TraceContext(carrier["traceparent"], carrier.get("tracestate") or None)


def stored_context(traceparent: str | None, tracestate: str | None) -> Context | None:
    """The OpenTelemetry context a job stored; None without one (or an unreadable one)."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = _W3C.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


# --- this process's provider ----------------------------------------------------------------

_provider: TracerProvider | None = None
_configured = False


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables in `environ` turn traces on (see the module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip():
        return bool(_exporter_names(environ))
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def configure_tracing(service_name: str) -> Tracer | None:
    """Turn traces on for this process if OTEL_* asks (see above); its tracer, or None.

    Read once per process: later calls return what the first one decided. The provider is
    also made OpenTelemetry's global one, so libraries that trace find it; it flushes its
    spans when the process exits. TracingConfigError for an exporter that is not installed.
    """
    global _configured
    if _configured or _provider is not None:
        return tracer()
    environ = os.environ
    if not tracing_requested(environ):
        _configured = True
        return None
    provider = TracerProvider(resource=_resource(service_name))
    for exporter in _exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    set_provider(provider)
    _configured = True
    logger.info("tracing on: exporting spans to %s", ", ".join(_exporter_names(environ)))
    return tracer()


def tracing_or_exit(program: str, service_name: str) -> Tracer | None:
    """configure_tracing(), or one line naming the bad variable and exit code 2."""
    try:
        return configure_tracing(service_name)
    except TracingConfigError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def set_provider(provider: TracerProvider | None) -> None:
    """Use `provider` for this process's spans (None: tracing off), whatever OTEL_* says.

    For an application that builds its own provider (and for tests): call it before
    create_app() or the worker's start.
    """
    global _provider
    _provider = provider


def tracer() -> Tracer | None:
    """This process's tracer; None while tracing is off."""
    return None if _provider is None else _provider.get_tracer(TRACER_NAME)


def _resource(service_name: str) -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; `service_name` when they name none."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    return resource


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    """OTEL_TRACES_EXPORTER as a list (`otlp` when unset), without `none`."""
    names = environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    return [
        name for name in (n.strip().lower() for n in names.split(",")) if name not in ("", "none")
    ]


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    """One exporter per name: OTLP over HTTP, the console, or one an installed package adds."""
    exporters: list[SpanExporter] = []
    for name in _exporter_names(environ):
        if name in ("otlp", "otlp_proto_http"):
            exporters.append(_otlp_exporter(environ))
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            found = entry_points(group="opentelemetry_traces_exporter", name=name)
            if not found:
                raise TracingConfigError(
                    f"OTEL_TRACES_EXPORTER: no span exporter named {name!r} is installed"
                    " (installed: otlp over HTTP, console)"
                )
            exporters.append(next(iter(found)).load()())
    return exporters


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter:
    """OTLP over HTTP; it reads its endpoint, headers, timeout and compression from OTEL_*."""
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        or OTLP_PROTOCOL
    )
    if protocol != OTLP_PROTOCOL:
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only {OTLP_PROTOCOL} is installed"
            " (point the exporter at the collector's OTLP/HTTP port, usually 4318)"
        )
    # Imported only when used: it brings protobuf and an HTTP client.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
