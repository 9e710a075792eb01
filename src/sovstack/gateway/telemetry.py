"""What each gateway call tells the operator: Prometheus metrics per model and deployment, and an
OpenTelemetry span (GenAI semantic conventions) when tracing is on.

Everything is recorded once, from the finished ``Call`` (``proxy._finish``, and ``proxy._refuse`` for
calls the policy refused), plus the moment the first streamed event was relayed. Metric children are
looked up once per (model, deployment, endpoint, outcome) and kept, so a call costs a dict lookup and a
few increments.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sovstack.core.api.middleware import Metrics
from sovstack.gateway.metering import Call
from sovstack.gateway.routing import Breakers, Candidate

if TYPE_CHECKING:
    from sovstack.gateway.spans import CallTracer

CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}
# Model calls take from milliseconds (embeddings, cached) to minutes (long generations).
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class Timing:
    """When a call started and what it waited for, in ``time.perf_counter`` seconds."""

    started: float
    upstream_seconds: float | None = None  # request sent → answer (non-stream) or stream opened
    first_event: float | None = None  # the first streamed event was relayed to the client


@dataclass
class _Children:
    calls: Any
    seconds: Any
    tokens_in: Any
    tokens_out: Any
    cost: Any
    upstream: Any
    first_token: Any


class GatewayMetrics:
    """The gateway's metrics, in the app's own registry (served at ``/metrics``)."""

    def __init__(self, metrics: Metrics, breakers: Breakers) -> None:
        registry, labels = metrics.registry, ["model", "deployment"]
        self.calls = Counter("sovstack_gateway_calls", "Gateway calls by model, answering deployment (empty when "
                             "none answered), endpoint and outcome", [*labels, "endpoint", "outcome"],
                             registry=registry)
        self.seconds = Histogram("sovstack_gateway_call_seconds", "Gateway call latency, from admission to the "
                                 "last byte relayed", [*labels, "endpoint"], buckets=SECONDS, registry=registry)
        self.tokens = Counter("sovstack_gateway_tokens", "Tokens metered, by direction (input, output)",
                              [*labels, "direction"], registry=registry)
        self.cost = Counter("sovstack_gateway_cost", "Cost metered, at the deployments' prices", labels,
                            registry=registry)
        self.upstream = Histogram("sovstack_gateway_upstream_seconds", "Upstream latency of the answering "
                                  "deployment: until its whole answer, or until a stream opened", labels,
                                  buckets=SECONDS, registry=registry)
        self.first_token = Histogram("sovstack_gateway_time_to_first_token_seconds", "Streams: from admission "
                                     "to the first event relayed to the client", labels, buckets=SECONDS,
                                     registry=registry)
        self.attempts = Counter("sovstack_gateway_upstream_attempts", "Calls sent to a deployment, by result "
                                "(ok, failed: connection, timeout, 429/5xx, broken stream)",
                                [*labels, "result"], registry=registry)
        self.names: dict[int, str] = {}  # deployment id → name, for the circuit gauge
        self._children: dict[tuple[str, str, str, str], _Children] = {}
        self._attempt_children: dict[tuple[str, str, str], Any] = {}
        metrics.add_per_process(_Circuits(breakers, self.names))

    def _of(self, call: Call) -> _Children:
        key = (call.model, call.answered, call.endpoint, call.outcome)
        found = self._children.get(key)
        if found is None:
            model, dep = call.model, call.answered
            found = self._children[key] = _Children(
                self.calls.labels(model, dep, call.endpoint, call.outcome),
                self.seconds.labels(model, dep, call.endpoint), self.tokens.labels(model, dep, "input"),
                self.tokens.labels(model, dep, "output"), self.cost.labels(model, dep),
                self.upstream.labels(model, dep), self.first_token.labels(model, dep))
        return found

    def record(self, call: Call, candidates: Sequence[Candidate], timing: Timing) -> None:
        """Count one finished call."""
        child = self._of(call)
        child.calls.inc()
        child.seconds.observe(call.latency_ms / 1000)
        if call.tokens_in:
            child.tokens_in.inc(call.tokens_in)
        if call.tokens_out:
            child.tokens_out.inc(call.tokens_out)
        if call.cost:
            child.cost.inc(call.cost)
        if timing.upstream_seconds is not None:
            child.upstream.observe(timing.upstream_seconds)
        if timing.first_event is not None:
            child.first_token.observe(timing.first_event - timing.started)
        self._attempts(call)
        for cand in candidates:
            if cand.id not in self.names:
                self.names[cand.id] = cand.name

    def _attempts(self, call: Call) -> None:
        # Every deployment tried before the answering one failed; the last one failed too unless it answered
        # and the answer was whole.
        whole = call.answered and call.outcome not in ("interrupted", "failed")
        for i, name in enumerate(call.tried):
            key = (call.model, name, "ok" if whole and i == len(call.tried) - 1 else "failed")
            child = self._attempt_children.get(key)
            if child is None:
                child = self._attempt_children[key] = self.attempts.labels(*key)
            child.inc()


class _Circuits(Collector):
    """The circuit of each deployment this process has called, read when scraped (open turns half-open
    with time, not with calls). Circuits are per process: with several workers, the answering one's."""

    def __init__(self, breakers: Breakers, names: dict[int, str]) -> None:
        self.breakers, self.names = breakers, names

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("sovstack_gateway_circuit_state", "Circuit of each deployment in this process: "
                                  "0 closed, 1 half-open, 2 open", labels=["deployment"])
        for dep_id, breaker in list(self.breakers.by_deployment.items()):
            gauge.add_metric([self.names.get(dep_id, str(dep_id))], CIRCUIT_STATES[breaker.state()])
        yield gauge


class Telemetry:
    """The gateway's metrics and, when tracing is on, its tracer; ``finished`` is called once per call."""

    def __init__(self, metrics: GatewayMetrics, tracer: CallTracer | None = None) -> None:
        self.metrics, self.tracer = metrics, tracer

    def finished(self, call: Call, candidates: Sequence[Candidate], timing: Timing,
                 headers: Any = None) -> None:
        self.metrics.record(call, candidates, timing)
        if self.tracer is not None:
            self.tracer.span(call, candidates, timing, time.perf_counter(), headers)

    def close(self) -> None:
        if self.tracer is not None:
            self.tracer.close()


def tracer_for(endpoint: str, service_name: str) -> CallTracer | None:
    """A tracer exporting to the OTLP/HTTP ``endpoint``, or None (tracing off: OpenTelemetry is never imported)."""
    if not endpoint:
        return None
    from sovstack.gateway.spans import CallTracer, otlp_provider  # only when tracing is on: it costs memory

    provider = otlp_provider(endpoint, service_name)
    return CallTracer(provider.get_tracer("sovstack.gateway"), provider)
