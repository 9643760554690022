"""Fixtures for the observability tests: captured JSON log lines, in-memory spans, a tiny OTLP/HTTP
collector, and the live-server factory of the integration tests."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from agent_runner.observability.logs import make_handler
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# The integration tests' live-server factory (and the hook that attaches server logs to failures).
_spec = importlib.util.spec_from_file_location(
    "_secure_agent_integration_conftest", Path(__file__).parent.parent / "integration" / "conftest.py"
)
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)
server_factory = _integration.server_factory
pytest_runtest_makereport = _integration.pytest_runtest_makereport
DEV_API_KEY = _integration.DEV_API_KEY


@dataclass
class LogCapture:
    stream: io.StringIO = field(default_factory=io.StringIO)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def json_logs() -> Iterator[LogCapture]:
    """Every log record of the process, formatted by the production JSON handler into a buffer.

    Added without the mark configure_logging uses, so an app's lifespan does not remove it."""
    capture = LogCapture()
    handler = make_handler("mcp-api", "json", stream=capture.stream)
    handler._secure_agent_handler = False
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield capture
    finally:
        root.removeHandler(handler)


_exporter = InMemorySpanExporter()
_installed = False


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans of this process, kept in memory (one SDK provider per process; this adds a processor)."""
    global _installed
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not _installed:
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        _installed = True
    _exporter.clear()
    yield _exporter
    _exporter.clear()


@dataclass
class CollectedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    attributes: dict


class OtlpCollector:
    """An OTLP/HTTP (protobuf) traces receiver on 127.0.0.1, for spans exported by runner processes."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        collected: list[CollectedSpan] = []
        self.spans = collected

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"),
                        "",
                    )
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            collected.append(
                                CollectedSpan(
                                    name=span.name,
                                    trace_id=span.trace_id.hex(),
                                    span_id=span.span_id.hex(),
                                    parent_span_id=span.parent_span_id.hex(),
                                    service=service,
                                    attributes={a.key: a.value.string_value or a.value.int_value for a in span.attributes},
                                )
                            )
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def otlp_collector() -> Iterator[OtlpCollector]:
    collector = OtlpCollector()
    yield collector
    collector.close()


def load_generator(name: str):
    """dashboards/generate.py or alerts/generate.py as a module."""
    root = Path(__file__).resolve().parents[4]
    path = root / name / "generate.py"
    spec = importlib.util.spec_from_file_location(f"_secure_agent_{name}_generate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def dashboards_source():
    return load_generator("dashboards")


@pytest.fixture(scope="session")
def alerts_source():
    return load_generator("alerts")


@pytest.fixture
def layer_lines() -> Iterator[None]:
    """The per-layer lines of successful requests ("mcp request", "tool call"), written at DEBUG since
    the access line carries their fields: turned on by name, the way an operator would."""
    logger = logging.getLogger("mcp_api.mcp")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(previous)
