"""One gateway call: authenticate, classify, check quotas, route by policy, fail over, meter, audit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx
import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from sovstack.core import policy
from sovstack.core.api.deps import authenticate
from sovstack.core.base import utcnow
from sovstack.core.db import Database
from sovstack.core.errors import BadInput, NotFound, Refused, Unavailable
from sovstack.gateway import http1, limits, routing
from sovstack.gateway.facts import Facts
from sovstack.gateway.language import Detector
from sovstack.gateway.metering import Call, Counters, RateLeases, record
from sovstack.gateway.routing import Breakers, Candidate
from sovstack.gateway.secrets import unseal
from sovstack.gateway.telemetry import Telemetry, Timing
from sovstack.gateway.writer import MeterWriter

T = TypeVar("T")
CLASSIFICATION_HEADER = "x-sovstack-classification"
STREAM_MAX_SECONDS = 900.0
STREAM_TIMEOUT_FACTOR = 10  # a stream may last this many times its deployment's per-read timeout
PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings"}


@dataclass
class GatewayState:
    """Per-app state of the gateway: the upstream client, the circuits, the counters, the detector."""

    client: http1.Client
    probe: httpx.AsyncClient  # the console's reachability probes, off the hot path
    breakers: Breakers
    counters: Counters
    detector: Detector
    writer: MeterWriter
    telemetry: Telemetry
    facts: Facts = field(default_factory=Facts)
    leases: RateLeases = field(default_factory=RateLeases)


@dataclass
class Prepared:
    call: Call
    candidates: list[Candidate]
    budget_period: str | None
    wants_usage: bool = True
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float | None = None  # the answering deployment's, for the metrics
    first_event: float | None = None  # when the first streamed event was relayed (time to first token)


class UpstreamFailed(Exception):
    """The upstream could not answer (connection, timeout, 429/5xx, garbage): try the next deployment."""


def _classification(request: Request, binding: limits.Binding) -> str:
    asked = request.headers.get(CLASSIFICATION_HEADER, "").strip().lower() or binding.default_classification
    if asked not in policy.LEVELS:
        raise BadInput(f"unknown classification {asked!r}; one of {', '.join(policy.LEVELS)}",
                       field=CLASSIFICATION_HEADER)
    # A request may raise its classification, never lower it below the key's or its organisation's floor.
    floor = binding.floor_classification
    return asked if policy.rank(asked) >= policy.rank(floor) else floor


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class _WouldWait(Exception):
    """SQLite's write lock is held by another connection: do this in a worker thread, where waiting is fine."""


async def admit(request: Request, state: GatewayState, endpoint: str, body: dict[str, Any]) -> Prepared:
    """``prepare`` on the event loop when the database answers at once, else in a worker thread.

    On SQLite, a request's reads (key, catalogue stamp, budget) take tens of microseconds, less than
    handing them to a thread; its rare writes (a rate-limit claim, the key's last-use stamp) may meet
    another process's write lock, and then the whole preparation moves to a thread instead of
    blocking the loop. Over a network database every statement is a round trip: always a thread.
    """
    if request.app.state.db.dialect == "sqlite":
        try:
            return prepare(request, state, endpoint, body, wait=False)
        except _WouldWait:
            pass
    return await run_in_threadpool(prepare, request, state, endpoint, body)


def prepare(request: Request, state: GatewayState, endpoint: str, body: dict[str, Any], *,
            wait: bool = True) -> Prepared:
    """Everything that needs the database before the upstream call."""
    db: Database = request.app.state.db
    if wait:
        def work() -> Prepared:
            # PostgreSQL: the reads and the single-statement writes commit on their own (fewer round trips).
            with db.session_autocommit() as session:
                return _prepare(request, session, db.session, state, endpoint, body)

        return db.reconnecting(work)  # nothing is written before the reads that would meet a dropped link
    with db.session_nowait() as session:
        try:
            return _prepare(request, session, db.session_nowait, state, endpoint, body)
        except OperationalError as exc:
            if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
                raise
            session.rollback()
            raise _WouldWait from exc


def _prepare(request: Request, session: Session, transaction: Callable[[], AbstractContextManager[Session]],
             state: GatewayState, endpoint: str, body: dict[str, Any]) -> Prepared:
    """``session`` for the reads; a ``transaction()`` session for a refusal's usage and audit event."""
    settings = request.app.state.settings
    # With the caller's memberships: every call is bound to one of their organisations (gateway/limits.py).
    who = authenticate(request, session)
    request.state.principal = who
    if not who.has_scope("gateway"):
        raise Refused("this API key lacks the gateway scope", action="gateway.auth",
                      reasons=[f"key {who.key_prefix} has scopes {sorted(who.scopes)}"])
    snap = state.facts.current(session, settings.home_jurisdiction, lambda t: unseal(settings, t))
    organisation_id = limits.organisation_of(who, request.headers.get(limits.ORGANISATION_HEADER, ""))
    binding = limits.bind(snap, who, organisation_id)
    classification = _classification(request, binding)
    periods = limits.admit(session, state.counters, state.leases, who, binding, utcnow())
    model = snap.models.get(body["model"])
    if model is None:
        raise NotFound(f"the model {body['model']!r} does not exist", field="model")
    call = Call(actor=who.actor, key_prefix=who.key_prefix or "", organisation_id=organisation_id,
                model=model.name, endpoint=endpoint, classification=classification, person_id=who.user_id,
                person_period=periods.person)
    if binding.keep_days:
        call.keep_days = binding.keep_days
        call.prompt = orjson.dumps(body.get("messages") or body.get("input")).decode()
    if model.language_routing:
        call.language = state.detector.detect(_last_user_text(body)) or ""
    # Process decisions do not depend on who asks, so a plan serves every request of its kind.
    plan = snap.plans.get((model.name, classification))
    if plan is None:
        plan = snap.plans[(model.name, classification)] = routing.plan(
            snap.policy, None, classification, model.deployments)
    if not plan.allowed:
        with transaction() as tx:
            _refuse(tx, state, call, plan.refused)
    return Prepared(call, routing.order(plan.allowed, call.language or None), periods.organisation)


def _refuse(session: Any, state: GatewayState, call: Call, refused: dict[str, list[str]]) -> None:
    reasons = [f"{name}: {'; '.join(why)}" for name, why in refused.items()] or ["the model has no deployments"]
    call.outcome, call.reasons = "refused", reasons
    record(session, state.counters, call, None)
    state.telemetry.finished(call, (), Timing(time.perf_counter()))
    exc = Refused(f"no deployment of {call.model} may serve a {call.classification} request; "
                  f"candidates refused: {' | '.join(reasons)}", action=f"gateway.{call.endpoint}", reasons=reasons)
    exc.audited = True
    raise exc


def _upstream_body(body: dict[str, Any], cand: Candidate) -> dict[str, Any]:
    return {**body, "model": cand.upstream_model}


def _headers(cand: Candidate) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if cand.api_key:
        headers["authorization"] = f"Bearer {cand.api_key}"
    return headers


async def _post(state: GatewayState, cand: Candidate, path: str, body: dict[str, Any]) -> dict[str, Any] | Response:
    try:
        resp = await state.client.post(cand.base_url + path, orjson.dumps(_upstream_body(body, cand)),
                                       _headers(cand), cand.timeout)
        content = await resp.read()
    except http1.UpstreamError as exc:
        raise UpstreamFailed(str(exc)) from exc
    if resp.status == 429 or resp.status >= 500:
        raise UpstreamFailed(f"HTTP {resp.status}")
    if resp.status >= 400:
        # The request itself is wrong (the upstream says so): pass its answer on, no failover.
        return Response(content, status_code=resp.status, media_type="application/json")
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFailed("not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamFailed("not a JSON object")
    return data


def _meter(call: Call, cand: Candidate, usage: dict[str, Any] | None) -> None:
    usage = usage or {}
    call.tokens_in = int(usage.get("prompt_tokens") or 0)
    call.tokens_out = int(usage.get("completion_tokens") or 0)
    call.cost = (call.tokens_in * cand.price_in + call.tokens_out * cand.price_out) / 1_000_000


def _response_headers(call: Call) -> dict[str, str]:
    return {"x-sovstack-deployment": call.answered, "x-sovstack-tries": str(len(call.tried)),
            "x-sovstack-classification": call.classification, "x-sovstack-language": call.language}


async def _finish(request: Request, state: GatewayState, prepared: Prepared) -> None:
    prepared.call.latency_ms = (time.perf_counter() - prepared.started) * 1000
    state.telemetry.finished(prepared.call, prepared.candidates, Timing(
        prepared.started, prepared.upstream_seconds, prepared.first_event), request.headers)
    await state.writer.submit(prepared.call, prepared.budget_period, state.counters)


async def _all_failed(request: Request, state: GatewayState, prepared: Prepared, failures: list[str]) -> Unavailable:
    call = prepared.call
    call.outcome, call.reasons = "failed", failures
    await _finish(request, state, prepared)
    return Unavailable(f"no deployment of {call.model} answered: {'; '.join(failures) or 'all circuits open'}",
                       reasons=failures)


async def _failover(request: Request, state: GatewayState, prepared: Prepared,
                    attempt: Callable[[Candidate], Awaitable[T]]) -> tuple[Candidate, T]:
    """Try the allowed deployments in order, past open circuits, until ``attempt`` succeeds on one."""
    call, failures = prepared.call, []
    for cand in prepared.candidates:
        breaker = state.breakers.of(cand.id)
        if not breaker.allows():
            failures.append(f"{cand.name}: circuit open")
            continue
        call.tried.append(cand.name)
        sent = time.perf_counter()
        try:
            result = await attempt(cand)
        except UpstreamFailed as exc:
            breaker.failed()
            failures.append(f"{cand.name}: {exc}")
            continue
        call.answered, prepared.upstream_seconds = cand.name, time.perf_counter() - sent
        return cand, result
    raise await _all_failed(request, state, prepared, failures)


async def forward(request: Request, state: GatewayState, prepared: Prepared, body: dict[str, Any]) -> Response:
    """Try the allowed deployments in order until one answers (non-streaming)."""
    call = prepared.call
    cand, result = await _failover(request, state, prepared,
                                   lambda c: _post(state, c, PATHS[call.endpoint], body))
    state.breakers.of(cand.id).succeeded()
    if isinstance(result, Response):
        call.outcome, call.reasons = "upstream_error", [f"{cand.name}: HTTP {result.status_code}"]
        await _finish(request, state, prepared)
        result.headers.update(_response_headers(call))
        return result
    _meter(call, cand, result.get("usage"))
    if call.keep_days:
        call.completion = [str(c.get("message", {}).get("content") or "") for c in result.get("choices") or []]
    result["model"] = call.model
    await _finish(request, state, prepared)
    return Response(orjson.dumps(result), media_type="application/json", headers=_response_headers(call))


async def _open_stream(state: GatewayState, cand: Candidate, body: dict[str, Any]) -> http1.Response:
    upstream = _upstream_body(body, cand)
    upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    try:
        resp = await state.client.post(cand.base_url + PATHS["chat"], orjson.dumps(upstream), _headers(cand),
                                       cand.timeout)
    except http1.UpstreamError as exc:
        raise UpstreamFailed(str(exc)) from exc
    if resp.status == 429 or resp.status >= 400:
        resp.close()
        raise UpstreamFailed(f"HTTP {resp.status}")
    return resp


async def stream(request: Request, state: GatewayState, prepared: Prepared, body: dict[str, Any]) -> Response:
    """Open a stream on the first deployment that answers, then relay it chunk by chunk.

    Its circuit is told of success only at ``[DONE]``: a stream that dies half-way counts as a failure.
    """
    prepared.wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    cand, resp = await _failover(request, state, prepared, lambda c: _open_stream(state, c, body))
    return StreamingResponse(_relay(request, state, prepared, cand, resp), media_type="text/event-stream",
                             headers=_response_headers(prepared.call))


def _error_event(message: str) -> bytes:
    return b"data: " + orjson.dumps({"error": {"message": message, "type": "upstream_error",
                                               "code": "stream_interrupted"}}) + b"\n\n"


async def _relay(request: Request, state: GatewayState, prepared: Prepared, cand: Candidate,
                 resp: http1.Response) -> AsyncIterator[bytes]:
    call, breaker = prepared.call, state.breakers.of(cand.id)
    deadline = time.monotonic() + min(STREAM_MAX_SECONDS, cand.timeout * STREAM_TIMEOUT_FACTOR)
    finished, event = False, bytearray()
    try:
        async for line in resp.iter_lines():
            if time.monotonic() > deadline:
                raise UpstreamFailed("the stream went on past its time limit")
            if line.strip() == "data: [DONE]":
                # Metered and audited before the client sees the end, so usage is never behind the client.
                breaker.succeeded()
                finished = True
                await _finish(request, state, prepared)
                yield b"data: [DONE]\n\n"
                return
            if line:
                event += _relay_line(call, cand, line, prepared.wants_usage) or b""
            elif event:  # a blank line ends an event: one write per event, not per line
                if prepared.first_event is None:
                    prepared.first_event = time.perf_counter()
                yield bytes(event) + b"\n"
                event.clear()
        raise UpstreamFailed("the upstream closed the stream before [DONE]")
    except (http1.UpstreamError, UpstreamFailed) as exc:
        breaker.failed()
        call.outcome, call.reasons = "interrupted", [f"{cand.name}: {exc or type(exc).__name__} mid-stream"]
        finished = True
        await _finish(request, state, prepared)
        yield _error_event(f"the upstream {cand.name} failed mid-stream; the answer is incomplete")
    finally:
        # When the client went away the generator is being cancelled: shield the clean-up and the metering.
        with anyio.CancelScope(shield=True):
            resp.close()
            if not finished:
                call.outcome = "client_closed"
                await _finish(request, state, prepared)


def _relay_line(call: Call, cand: Candidate, line: str, wants_usage: bool) -> bytes | None:
    if not line.startswith("data: "):
        return (line + "\n").encode()
    try:
        chunk = orjson.loads(line[6:])
    except orjson.JSONDecodeError as exc:
        raise UpstreamFailed("garbage in the stream") from exc
    if isinstance(chunk, dict):
        if chunk.get("usage"):
            _meter(call, cand, chunk["usage"])
            if not wants_usage and not chunk.get("choices"):
                return None  # the usage-only chunk we asked for on the client's behalf
        chunk["model"] = call.model
        if call.keep_days:
            call.completion.extend(str((c.get("delta") or {}).get("content") or "") for c in chunk.get("choices") or [])
    return b"data: " + orjson.dumps(chunk) + b"\n"
