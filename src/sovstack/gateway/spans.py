"""One OpenTelemetry span per gateway call, after the GenAI semantic conventions (imported only when
tracing is on).

The span is built when the call has finished, with the call's own start and end times: nothing is
held open across the upstream call, and a call costs nothing more until then. Prompts and completions
go into a span only for organisations that opted in to keeping them (``Call.keep_days > 0``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sovstack.gateway.metering import Call
from sovstack.gateway.routing import Candidate
from sovstack.gateway.telemetry import Timing

OPERATIONS = {"chat": "chat", "embeddings": "embeddings"}


def otlp_provider(endpoint: str, service_name: str) -> TracerProvider:
    """A tracer provider of its own (not the process-wide one), batching spans to an OTLP/HTTP collector."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class CallTracer:
    """Turns finished calls into spans on ``tracer``; ``provider``, when given, is flushed at shutdown."""

    def __init__(self, tracer: Tracer, provider: TracerProvider | None = None) -> None:
        self.tracer, self.provider = tracer, provider
        self.propagator = TraceContextTextMapPropagator()

    def close(self) -> None:
        """Export the spans still batched, then stop the exporter."""
        if self.provider is not None:
            self.provider.shutdown()

    def span(self, call: Call, candidates: Sequence[Candidate], timing: Timing, ended: float,
             headers: Any = None) -> None:
        """Record the call as a finished client span, a child of the caller's ``traceparent`` if it sent one."""
        now_ns, now = time.time_ns(), time.perf_counter()
        start_ns = now_ns - int((now - timing.started) * 1e9)
        end_ns = now_ns - int((now - ended) * 1e9)
        parent = self.propagator.extract(headers) if headers is not None else None
        operation = OPERATIONS.get(call.endpoint, call.endpoint)
        span = self.tracer.start_span(f"{operation} {call.model}", context=parent, kind=SpanKind.CLIENT,
                                      start_time=start_ns, attributes=attributes(call, candidates, timing))
        if call.outcome != "ok":
            span.set_attribute("error.type", call.outcome)
            span.set_status(Status(StatusCode.ERROR, "; ".join(call.reasons)[:500]))
        span.end(end_time=end_ns)


def attributes(call: Call, candidates: Sequence[Candidate], timing: Timing) -> dict[str, Any]:
    """The span's attributes: GenAI conventions, then sovstack's own (``sovstack.*``)."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": OPERATIONS.get(call.endpoint, call.endpoint),
        "gen_ai.request.model": call.model,
        "gen_ai.usage.input_tokens": call.tokens_in,
        "gen_ai.usage.output_tokens": call.tokens_out,
        "sovstack.request_id": call.request_id,
        "sovstack.classification": call.classification,
        "sovstack.outcome": call.outcome,
        "sovstack.tries": len(call.tried),
        "sovstack.cost": call.cost,
    }
    if call.language:
        attrs["sovstack.language"] = call.language
    answered = next((c for c in candidates if c.name == call.answered), None) if call.answered else None
    if answered is not None:
        url = urlsplit(answered.base_url)
        attrs.update({"gen_ai.response.model": answered.upstream_model,
                      "gen_ai.provider.name": answered.facts.get("operator", ""),
                      "server.address": url.hostname or "", "sovstack.deployment": answered.name})
        if url.port:
            attrs["server.port"] = url.port
    if timing.upstream_seconds is not None:
        attrs["sovstack.upstream_ms"] = round(timing.upstream_seconds * 1000, 3)
    if timing.first_event is not None:
        attrs["sovstack.time_to_first_token_ms"] = round((timing.first_event - timing.started) * 1000, 3)
    if call.keep_days > 0:  # the organisation opted in to keeping prompts and completions
        attrs["gen_ai.input.messages"] = call.prompt
        attrs["gen_ai.output.messages"] = orjson.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "".join(call.completion)}]}]).decode()
    return attrs
