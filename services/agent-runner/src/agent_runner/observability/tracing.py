"""OpenTelemetry set-up shared by mcp-api and agent-runner.

Span ids are always made (an SDK TracerProvider is installed) so that log lines carry trace and
span ids and W3C `traceparent` reaches the runner; spans are *exported* only when an OTLP endpoint
is configured: explicitly, or with the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
`OTEL_EXPORTER_OTLP_ENDPOINT` variables. `OTEL_SDK_DISABLED=true` turns everything off.

A span is *recorded* (attributes, events, links kept; an SDK Span built and ended) only while some
span processor would receive it; until then the sampler answers DROP and the SDK hands out a
NonRecordingSpan that still carries fresh trace and span ids. That keeps the ids of log lines and
of `traceparent` while costing a fraction of a recorded span (three spans a request were ~8 % of a
tools/call's CPU with nothing exporting them). Side effect: without an exporter the spans are marked
not sampled, so a runner exporting on its own would follow that decision.

`current_span` goes one step further for the spans of the request path: while nothing would receive
them it skips the SDK's span machinery (sampler call, span builder, two generator-based context
managers) and attaches a NonRecordingSpan with the very ids the SDK would have made (1.2 instead of
4.7 µs a span; five spans a tools/call across mcp-api and its runner).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

log = logging.getLogger(__name__)
_exporting: set[str] = set()
# (provider, its processor list, its id generator) once setup_tracing installed the provider.
_installed: tuple[Any, Any, Any] | None = None


def otlp_traces_endpoint(endpoint: str | None = None) -> str | None:
    """The OTLP/HTTP traces URL: `endpoint` (a base URL or a full /v1/traces URL) or the OTEL_ env."""
    if endpoint:
        endpoint = endpoint.rstrip("/")
        return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"
    explicit = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if explicit:
        return explicit
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return f"{base.rstrip('/')}/v1/traces" if base else None


def tracing_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def setup_tracing(
    service_name: str,
    *,
    enabled: bool = True,
    otlp_endpoint: str | None = None,
    otlp_headers: Mapping[str, str] | None = None,
    sample_ratio: float = 1.0,
    service_version: str | None = None,
):
    """Install (once per process) an SDK TracerProvider and, when configured, an OTLP exporter.

    Returns the provider, or None when tracing is disabled. Calling it again adds an exporter for
    a new endpoint but never replaces the provider (OpenTelemetry allows one per process).
    """
    if not enabled or tracing_disabled():
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        attributes = {"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name}
        if service_version:
            attributes["service.version"] = service_version
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.sampler = _recorded_when_exported(ParentBased(TraceIdRatioBased(sample_ratio)), provider)
        trace.set_tracer_provider(provider)
    global _installed
    if _installed is None or _installed[0] is not provider:
        _installed = (provider, provider._active_span_processor, provider.id_generator)
    endpoint = otlp_traces_endpoint(otlp_endpoint)
    if endpoint and endpoint not in _exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, headers=dict(otlp_headers or {}) or None))
        )
        _exporting.add(endpoint)
        log.info("exporting traces over OTLP/HTTP", extra={"otlp_endpoint": endpoint})
    return provider


def _recorded_when_exported(delegate, provider):
    """A sampler: `delegate`'s decision while the provider has a span processor, else DROP."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    # The provider's processor list (private: the SDK has no public "has processors"); read per span,
    # so a processor added later (an exporter, a test's in-memory one) takes effect at once.
    processors = provider._active_span_processor

    class WhenExported(Sampler):
        def should_sample(
            self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
        ):  # noqa: E501
            if processors._span_processors:
                return delegate.should_sample(
                    parent_context, trace_id, name, kind, attributes, links, trace_state
                )
            parent = trace.get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)

        def get_description(self) -> str:
            return f"WhenExported{{{delegate.get_description()}}}"

    return WhenExported()


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_span(
    tracer: trace.Tracer,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
    context: Context | None = None,
    record_exception: bool = True,
    set_status_on_exception: bool = True,
):
    """`tracer.start_as_current_span(...)`, or `ids_only_span(context)` when that applies."""
    return ids_only_span(context) or tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=record_exception,
        set_status_on_exception=set_status_on_exception,
    )


def ids_only_span(context: Context | None = None) -> _IdsOnlySpan | None:
    """While the provider setup_tracing installed has no span processor (so its sampler drops every
    span): a context manager making and attaching the NonRecordingSpan the SDK would have made,
    without building it through the SDK. Otherwise None: start the span the usual way."""
    installed = _installed
    if (
        installed is not None
        and not installed[1]._span_processors
        and trace.get_tracer_provider() is installed[0]
    ):
        return _IdsOnlySpan(installed[2], context)
    return None


class _IdsOnlySpan:
    """What Tracer.start_as_current_span gives when the sampler drops: the parent's trace id (a new one
    without a valid parent), a new span id, not sampled, the random-trace-id flag as the SDK sets it,
    the parent's trace state; current while the block runs."""

    __slots__ = ("_ids", "_context", "_token")

    def __init__(self, ids: Any, context: Context | None) -> None:
        self._ids = ids
        self._context = context

    def __enter__(self) -> NonRecordingSpan:
        parent = trace.get_current_span(self._context).get_span_context()
        if parent.is_valid:
            trace_id, state = parent.trace_id, parent.trace_state
            random_id = parent.trace_flags.random_trace_id
        else:
            trace_id, state = self._ids.generate_trace_id(), None
            random_id = self._ids.is_trace_id_random()
        flags = TraceFlags(TraceFlags.RANDOM_TRACE_ID if random_id else TraceFlags.DEFAULT)
        span = NonRecordingSpan(SpanContext(trace_id, self._ids.generate_span_id(), False, flags, state))
        self._token = context_api.attach(trace.set_span_in_context(span))
        return span

    def __exit__(self, *exc: object) -> None:
        context_api.detach(self._token)


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add W3C `traceparent` (and `tracestate`, baggage) of the current span to outgoing headers."""
    propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str]) -> Context | None:
    """The trace context an incoming request carries, or None (then spans start a new trace)."""
    if "traceparent" not in headers:
        return None
    ctx = propagate.extract(headers)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def ids_of(span: trace.Span) -> tuple[str, str] | None:
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
