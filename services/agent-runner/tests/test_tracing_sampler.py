"""Spans are recorded only while something would receive them; ids are made either way."""

from __future__ import annotations

from agent_runner.observability.tracing import _recorded_when_exported
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased


def _provider(delegate=ALWAYS_ON) -> TracerProvider:
    provider = TracerProvider()
    provider.sampler = _recorded_when_exported(delegate, provider)
    return provider


def test_without_a_processor_spans_are_not_recorded_but_carry_ids():
    tracer = _provider().get_tracer("t")
    with tracer.start_as_current_span("outer", attributes={"a": 1}) as outer:
        with tracer.start_as_current_span("inner") as inner:
            assert not outer.is_recording() and not inner.is_recording()
            outer_ctx, inner_ctx = outer.get_span_context(), inner.get_span_context()
            assert outer_ctx.is_valid and inner_ctx.is_valid
            # Log lines and traceparent still tie the two together.
            assert inner_ctx.trace_id == outer_ctx.trace_id and inner_ctx.span_id != outer_ctx.span_id
            assert trace.get_current_span() is inner


def test_a_processor_added_later_gets_every_span_from_then_on():
    provider = _provider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("before") as before:
        assert not before.is_recording()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracer.start_as_current_span("after", attributes={"a": 1}) as after:
        assert after.is_recording()
    assert [(s.name, dict(s.attributes)) for s in exporter.get_finished_spans()] == [("after", {"a": 1})]


def test_with_a_processor_the_configured_sampler_decides():
    provider = _provider(ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    with provider.get_tracer("t").start_as_current_span("root") as root:
        assert not root.is_recording()
    assert "ParentBased" in provider.sampler.get_description()


class _CountingIds:
    """Deterministic ids, so the SDK's spans and the ids-only ones can be compared exactly."""

    def __init__(self) -> None:
        self.n = 0

    def generate_trace_id(self) -> int:
        self.n += 1
        return 0xABC000 + self.n

    def generate_span_id(self) -> int:
        self.n += 1
        return 0xDEF000 + self.n

    def is_trace_id_random(self) -> bool:
        return self.random


def _ids(random: bool) -> _CountingIds:
    ids = _CountingIds()
    ids.random = random
    return ids


def _walk(open_span):
    """Open a root span, a child, and a span continuing a remote sampled parent with trace state;
    returns what each one carried and what was current inside and after."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    seen = []
    remote = TraceContextTextMapPropagator().extract(
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"}
    )
    before = trace.get_current_span()
    with open_span(None) as root:
        assert trace.get_current_span() is root
        with open_span(None) as child:
            assert trace.get_current_span() is child
            seen.append(child.get_span_context())
        assert trace.get_current_span() is root
        seen.append(root.get_span_context())
        with open_span(remote) as continued:
            seen.append(continued.get_span_context())
    assert trace.get_current_span() is before
    return seen


def test_the_ids_only_span_carries_what_the_sdk_span_would(monkeypatch):
    from agent_runner.observability import tracing

    for random in (True, False):
        provider = _provider(ParentBased(ALWAYS_ON))
        provider.id_generator = _ids(random)
        sdk_tracer = provider.get_tracer("t")
        expected = _walk(lambda ctx: sdk_tracer.start_as_current_span("s", context=ctx))
        assert not any(c.trace_flags.sampled for c in expected)  # dropped: nothing would receive them

        provider.id_generator = _ids(random)
        monkeypatch.setattr(tracing, "_installed", (provider, provider._active_span_processor, provider.id_generator))
        monkeypatch.setattr(tracing.trace, "get_tracer_provider", lambda: provider)
        lean = _walk(lambda ctx: tracing.ids_only_span(ctx))
        assert lean == expected
        assert [(int(c.trace_flags), str(c.trace_state)) for c in lean] == [
            (int(c.trace_flags), str(c.trace_state)) for c in expected
        ]
        assert lean[2].trace_id == 0x0AF7651916CD43DD8448EB211C80319C and lean[2].trace_state.get("k") == "v"


def test_spans_are_built_by_the_sdk_once_something_would_receive_them(monkeypatch):
    from agent_runner.observability import tracing

    provider = _provider()
    monkeypatch.setattr(tracing, "_installed", (provider, provider._active_span_processor, provider.id_generator))
    monkeypatch.setattr(tracing.trace, "get_tracer_provider", lambda: provider)
    tracer = provider.get_tracer("t")
    with tracing.current_span(tracer, "unexported") as span:
        assert not span.is_recording() and span.get_span_context().is_valid
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.ids_only_span() is None
    with tracing.current_span(tracer, "exported", attributes={"a": 1}) as span:
        assert span.is_recording()
    assert [(s.name, dict(s.attributes)) for s in exporter.get_finished_spans()] == [("exported", {"a": 1})]


def test_no_ids_only_span_for_a_provider_it_did_not_install(monkeypatch):
    from agent_runner.observability import tracing

    provider = _provider()
    monkeypatch.setattr(tracing, "_installed", (provider, provider._active_span_processor, provider.id_generator))
    monkeypatch.setattr(tracing.trace, "get_tracer_provider", lambda: trace.NoOpTracerProvider())
    assert tracing.ids_only_span() is None
    monkeypatch.setattr(tracing, "_installed", None)
    assert tracing.ids_only_span() is None
