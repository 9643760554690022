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
