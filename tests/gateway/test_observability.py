"""Observability: request ids on every answer and in audit events, Prometheus metrics per model and
deployment, OpenTelemetry spans (GenAI conventions) without content unless the organisation opted in."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from openai import OpenAI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import select

from sovstack.core import request_id
from sovstack.core.context import unit_of_work
from sovstack.core.settings import Settings
from sovstack.core.tables import AuditEvent
from sovstack.gateway import service
from sovstack.gateway.metering import Call
from sovstack.gateway.schemas import OrgLoggingSet
from sovstack.gateway.spans import CallTracer
from sovstack.gateway.telemetry import Timing, tracer_for
from tests.conftest import start_server, stop_server
from tests.gateway.conftest import OPERATOR, Gateway, deployment, register
from tests.gateway.test_transcripts import SECRET_PROMPT, _org_key
from tests.gateway.upstream import Upstream

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


def _chat(gw: Gateway, key: str | None = None, stream: bool = False, **headers: str) -> httpx.Response:
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json={**BODY, "stream": stream}, timeout=30,
                      headers={"Authorization": f"Bearer {key or gw.key}", **headers}) as r:
        r.read()
        return r


def _gateway_events(gw: Gateway) -> list[dict[str, Any]]:
    with gw.db.session() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action.in_(("gateway.chat", "gateway.embeddings")))
                         .order_by(AuditEvent.seq)).all()
        return [json.loads(r.detail) for r in rows]


# Request ids ----------------------------------------------------------------------------------------

def test_a_well_formed_request_id_is_answered_and_audited(gateway: Gateway,
                                                          upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    sent = "trace-7f3a:0001"
    plain = _chat(gateway, **{"x-request-id": sent})
    streamed = _chat(gateway, stream=True, **{"x-request-id": "stream-42"})
    assert plain.status_code == streamed.status_code == 200
    assert plain.headers["x-request-id"] == sent
    assert streamed.headers["x-request-id"] == "stream-42"
    assert [e["request_id"] for e in _gateway_events(gateway)] == [sent, "stream-42"]


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "semi;colon", "quote\"", "é-accent"])
def test_a_malformed_request_id_is_replaced(gateway: Gateway, upstreams: Callable[..., Upstream], bad: str) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    raw = bad.encode("utf-8")
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json=BODY, timeout=30,
                   headers=[(b"authorization", f"Bearer {gateway.key}".encode()), (b"x-request-id", raw)])
    assert r.status_code == 200
    made = r.headers["x-request-id"]
    assert made != bad and len(made) == 32 and all(c in "0123456789abcdef" for c in made)
    assert _gateway_events(gateway)[-1]["request_id"] == made


def test_every_answer_carries_a_request_id(gateway: Gateway) -> None:
    seen = set()
    for path in ("/healthz", "/login", "/api/v1/gateway/models", "/no-such-page"):
        r = httpx.get(f"{gateway.url}{path}", headers={"Authorization": f"Bearer {gateway.key}"})
        seen.add(r.headers["x-request-id"])
    anonymous = httpx.post(f"{gateway.url}/v1/chat/completions", json=BODY)
    assert anonymous.status_code == 401 and anonymous.headers["x-request-id"] not in seen
    assert len(seen) == 4  # a new one each time


def test_a_refusal_during_a_request_is_audited_with_its_id(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {gateway.key}",
                                                     "x-request-id": "scrape-by-member"})
    assert r.status_code == 403
    with gateway.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "metrics.read")).one()
    assert event.outcome == "refused" and json.loads(event.detail)["request_id"] == "scrape-by-member"


def test_refused_by_policy_audit_names_the_request(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url, hosting_jurisdiction="US"))
    r = _chat(gateway, **{"x-request-id": "sensitive-1", "x-sovstack-classification": "sensitive"})
    assert r.status_code == 403 and r.headers["x-request-id"] == "sensitive-1"
    assert _gateway_events(gateway)[-1]["request_id"] == "sensitive-1"


def test_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("sovstack", logging.INFO, __file__, 1, "hello", None, None)
    token = request_id.bind("log-me")
    try:
        request_id.RequestIdFilter().filter(record)
    finally:
        request_id.unbind(token)
    assert record.request_id == "log-me"  # type: ignore[attr-defined]
    outside = logging.LogRecord("sovstack", logging.INFO, __file__, 1, "hello", None, None)
    request_id.RequestIdFilter().filter(outside)
    assert outside.request_id == "-"  # type: ignore[attr-defined]
    from uvicorn.config import LOGGING_CONFIG

    config = request_id.log_config(LOGGING_CONFIG, "info")
    assert all("%(request_id)s" in f["fmt"] for f in config["formatters"].values())
    assert all("request_id" in h["filters"] for h in config["handlers"].values())
    assert "request_id" not in LOGGING_CONFIG.get("filters", {})  # uvicorn's own stays as it was


# Metrics --------------------------------------------------------------------------------------------

def _metrics(gw: Gateway, url: str = "") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{url or gw.url}/metrics", headers={"Authorization": f"Bearer {gw.admin_key}"})
    assert r.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_per_model_and_deployment(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("broken", upstreams("broken", "500").url, priority=0),
             deployment("good", upstreams("good").url, priority=1, price_in=1.0, price_out=2.0))
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True))
    assert chunks
    m = _metrics(gateway)
    ok = {"model": "m", "deployment": "good"}
    assert _value(m, "sovstack_gateway_calls_total", **ok, endpoint="chat", outcome="ok") == 2
    assert _value(m, "sovstack_gateway_tokens_total", **ok, direction="input") == 11 + 5
    assert _value(m, "sovstack_gateway_tokens_total", **ok, direction="output") == 7 + 3
    assert _value(m, "sovstack_gateway_cost_total", **ok) == pytest.approx((16 * 1.0 + 10 * 2.0) / 1e6)
    assert _value(m, "sovstack_gateway_call_seconds_count", **ok, endpoint="chat") == 2
    assert _value(m, "sovstack_gateway_upstream_seconds_count", **ok) == 2
    assert _value(m, "sovstack_gateway_time_to_first_token_seconds_count", **ok) == 1  # the stream only
    assert _value(m, "sovstack_gateway_upstream_attempts_total", model="m", deployment="broken",
                  result="failed") == 2
    assert _value(m, "sovstack_gateway_upstream_attempts_total", **ok, result="ok") == 2
    assert _value(m, "sovstack_gateway_circuit_state", deployment="broken") == 0  # two failures: still closed
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert _value(_metrics(gateway), "sovstack_gateway_circuit_state", deployment="broken") == 2  # open


def test_failures_are_counted_by_cause(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("down", upstreams("down", "500").url))
    register(gateway.db, "cut", deployment("dropper", upstreams("dropper", "drop").url))
    register(gateway.db, "secret", deployment("abroad", upstreams("abroad").url, hosting_jurisdiction="US"))
    assert _chat(gateway).status_code == 503
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=30,
                      json={**BODY, "model": "cut", "stream": True},
                      headers={"Authorization": f"Bearer {gateway.key}"}) as r:
        r.read()
    refused = httpx.post(f"{gateway.url}/v1/chat/completions", json={**BODY, "model": "secret"}, timeout=30,
                         headers={"Authorization": f"Bearer {gateway.key}", "x-sovstack-classification": "sensitive"})
    assert refused.status_code == 403
    m = _metrics(gateway)
    assert _value(m, "sovstack_gateway_calls_total", model="m", deployment="", endpoint="chat",
                  outcome="failed") == 1
    assert _value(m, "sovstack_gateway_calls_total", model="cut", deployment="dropper", endpoint="chat",
                  outcome="interrupted") == 1
    assert _value(m, "sovstack_gateway_upstream_attempts_total", model="cut", deployment="dropper",
                  result="failed") == 1
    assert _value(m, "sovstack_gateway_calls_total", model="secret", deployment="", endpoint="chat",
                  outcome="refused") == 1


@pytest.mark.server
def test_a_scrape_sums_every_worker(gateway: Gateway, settings: Settings, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    srv = start_server(settings, workers=2)
    try:
        for _ in range(20):  # a new connection each: the two workers share them
            r = httpx.post(f"{srv.url}/v1/chat/completions", json=BODY, timeout=30,
                           headers={"Authorization": f"Bearer {gateway.key}", "connection": "close"})
            assert r.status_code == 200
        for _ in range(4):  # whichever worker answers the scrape
            m = _metrics(gateway, srv.url)
            assert _value(m, "sovstack_gateway_calls_total", model="m", deployment="d", endpoint="chat",
                          outcome="ok") == 20
    finally:
        stop_server(srv)


def test_metrics_need_an_admin_key(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    assert httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {gateway.key}"}).status_code == 403


# Traces ---------------------------------------------------------------------------------------------

@pytest.fixture
def spans(gateway: Gateway) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    gateway.app.state.gateway.telemetry.tracer = CallTracer(provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def test_a_span_per_call_with_genai_attributes(gateway: Gateway, upstreams: Callable[..., Upstream],
                                              spans: InMemorySpanExporter) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = _chat(gateway, stream=True, traceparent=f"00-{trace_id}-00f067aa0ba902b7-01",
              **{"x-request-id": "traced-1"})
    assert r.status_code == 200
    (span,) = spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert span.name == "chat m" and span.kind == SpanKind.CLIENT
    assert format(span.context.trace_id, "032x") == trace_id  # a child of the caller's trace
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "m"
    assert attrs["gen_ai.response.model"] == "up-d"
    assert attrs["gen_ai.provider.name"] == "Desi Cloud"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (5, 3)
    assert attrs["server.address"] == "127.0.0.1" and isinstance(attrs["server.port"], int)
    assert attrs["sovstack.request_id"] == "traced-1" and attrs["sovstack.deployment"] == "d"
    assert attrs["sovstack.time_to_first_token_ms"] > 0
    assert span.end_time is not None and span.start_time is not None and span.end_time > span.start_time
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output")) for k in attrs)
    assert "hello there" not in json.dumps(attrs)


def test_a_failed_call_is_an_error_span(gateway: Gateway, upstreams: Callable[..., Upstream],
                                        spans: InMemorySpanExporter) -> None:
    register(gateway.db, "m", deployment("down", upstreams("down", "500").url))
    assert _chat(gateway).status_code == 503
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "failed"


def test_content_is_in_spans_only_when_the_organisation_opted_in(
        gateway: Gateway, upstreams: Callable[..., Upstream], spans: InMemorySpanExporter) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    kept_org, kept_key = _org_key(gateway, "Opted In Ministry")
    _other, other_key = _org_key(gateway, "Default Ministry")
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_org_logging(s, OPERATOR, kept_org, OrgLoggingSet(enabled=True, retention_days=7))
    body = {"model": "m", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    for key in (kept_key, other_key):
        assert httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {key}"}).status_code == 200
    kept, other = (dict(s.attributes or {}) for s in spans.get_finished_spans())
    assert SECRET_PROMPT in kept["gen_ai.input.messages"] and "hello from d" in kept["gen_ai.output.messages"]
    assert SECRET_PROMPT not in json.dumps(other) and "gen_ai.input.messages" not in other


def test_tracing_is_off_by_default_and_costs_no_imports(settings: Settings) -> None:
    """Off: OpenTelemetry's SDK and exporter are never imported (FastAPI itself may import its API); nor are
    the data and compute engines a gateway call never uses, nor botocore or google-auth until a Bedrock or
    Vertex AI deployment is called."""
    code = textwrap.dedent(f"""
        import sys
        from sovstack.app import create_app
        from sovstack.core.settings import Settings
        app = create_app(Settings(home={str(settings.home)!r}, environment="test", secret_key="x" * 40))
        assert app.state.gateway.telemetry.tracer is None
        heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "sovstack.gateway.spans", "duckdb", "ortools",
                 "highspy", "numpy", "pandas", "pyarrow", "polars", "lingua", "botocore", "google.auth",
                 "google.oauth2", "requests")
        print(sorted({{h for h in heavy for m in sys.modules if m == h or m.startswith(h + ".")}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_the_endpoint_must_be_a_url(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="otel_endpoint"):
        Settings(home=settings.home, environment="test", otel_endpoint="collector:4318")
    assert Settings(home=settings.home, environment="test",
                    otel_endpoint=" http://127.0.0.1:4318/v1/traces ").otel_endpoint.startswith("http://")


def test_spans_are_exported_over_otlp_http_and_flushed_at_shutdown() -> None:
    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append((self.path, self.headers.get("content-type", ""), body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracer = tracer_for(f"http://127.0.0.1:{server.server_port}/v1/traces", "sovstack-test")
        assert tracer is not None and tracer_for("", "x") is None
        call = Call(actor="a", key_prefix="k", organisation_id=1, model="m", endpoint="chat",
                    classification="open", tokens_in=3, tokens_out=4)
        tracer.span(call, (), Timing(time.perf_counter() - 0.01), time.perf_counter())
        tracer.close()  # the batch is sent now, not in five seconds
        (path, kind, body), = received
        assert path == "/v1/traces" and kind == "application/x-protobuf"
        assert b"chat m" in body and b"gen_ai.request.model" in body and b"sovstack-test" in body
    finally:
        server.shutdown()
