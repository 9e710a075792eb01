"""One gateway call: authenticate, classify, check quotas, route by policy, fail over, meter, audit."""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
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
from sovstack.core.errors import BadGateway, BadInput, NotFound, RateLimited, Refused, Unavailable
from sovstack.gateway import backends, cache, http1, limits, routing, sse, stored
from sovstack.gateway.facts import Facts, ModelFacts, Snapshot
from sovstack.gateway.language import Detector
from sovstack.gateway.metering import (
    Call,
    Counters,
    RateLeases,
    count_text,
    estimate_tokens,
    record,
    split_text,
    text_of,
)
from sovstack.gateway.routing import Breakers, Candidate
from sovstack.gateway.secrets import unseal
from sovstack.gateway.telemetry import Telemetry, Timing
from sovstack.gateway.tokens import AccessTokens, TokenFailed, TokenRefused
from sovstack.gateway.writer import MeterWriter

T = TypeVar("T")
CLASSIFICATION_HEADER = "x-sovstack-classification"
STREAM_MAX_SECONDS = 900.0
STREAM_TIMEOUT_FACTOR = 10  # a stream may last this many times its deployment's per-read timeout
# Upstream path per gateway endpoint: /v1/responses and Anthropic's /v1/messages in front are sent on as chat.
PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "completions": "/completions",
         "moderations": "/moderations", "rerank": "/rerank", "responses": "/chat/completions",
         "messages": "/chat/completions"}


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
    sealer: stored.Sealer  # seals the responses organisations keep
    facts: Facts = field(default_factory=Facts)
    leases: RateLeases = field(default_factory=RateLeases)
    answers: cache.AnswerCache | None = None  # the organisations' opt-in answer cache
    inflight: limits.Inflight = field(default_factory=limits.Inflight)
    tokens: AccessTokens = field(default_factory=AccessTokens)  # upstream access tokens (Vertex AI's)


@dataclass
class Prepared:
    call: Call
    candidates: list[Candidate]
    budget_period: str | None
    cached: cache.Lookup | None = None
    wants_usage: bool = True
    started: float = field(default_factory=time.perf_counter)
    slot: str = ""  # the key holding one of its concurrency slots for this call, until ``release``
    upstream_seconds: float | None = None  # the answering deployment's, for the metrics
    first_event: float | None = None  # when the first streamed event was relayed (time to first token)
    response_days: int = 0  # > 0: the organisation keeps Responses API answers this long (gateway/stored.py)

    def release(self, state: GatewayState) -> None:
        """Give back the call's concurrency slot (once, however the call ended)."""
        if self.slot:
            state.inflight.release(self.slot)
            self.slot = ""


class Turned(Exception):
    """A limit refused the call: its usage row and audit event are written before the refusal is raised."""

    def __init__(self, call: Call, error: RateLimited | Refused) -> None:
        super().__init__(error.message)
        self.call, self.error = call, error


class UpstreamFailed(Exception):
    """The upstream could not answer (connection, timeout, 429/5xx, garbage): try the next deployment."""

    retryable = True  # worth another try on the same deployment, when it allows retries


class UpstreamMisconfigured(UpstreamFailed):
    """The upstream refused the gateway itself (401/403/404/405/407): its key, URL or model name is wrong.

    The operator's problem, never the caller's: the upstream's answer is not relayed (it might even echo
    the key), the deployment counts a failure, the next one is tried, and when none answers the caller
    gets 502 naming the deployments.
    """

    retryable = False


class UpstreamTimedOut(UpstreamFailed):
    retryable = False  # it already cost a whole timeout; fail over instead


# How an upstream's status is judged: the caller's fault (relayed, filtered), the deployment's
# configuration, or a failure worth another deployment. 2xx is success.
MISCONFIGURED = frozenset((401, 403, 404, 405, 407))
TRANSIENT = frozenset((408, 409, 425, 429))
REDACTED = "[redacted]"
_SECRETS = re.compile(r"(?i)(bearer\s+|sk-|key[-_=: ]+)[A-Za-z0-9._~+/=-]{8,}|[A-Za-z0-9_-]{32,}")


def _classification(request: Request, binding: limits.Binding, floor: str) -> str:
    asked = request.headers.get(CLASSIFICATION_HEADER, "").strip().lower() or binding.default_classification
    if asked not in policy.LEVELS:
        raise BadInput(f"unknown classification {asked!r}; one of {', '.join(policy.LEVELS)}",
                       field=CLASSIFICATION_HEADER)
    # A request may raise its classification, never lower it below the key's or its organisation's floor,
    # nor below that of the conversation it continues (``floor``).
    for lowest in (binding.floor_classification, floor):
        if policy.rank(asked) < policy.rank(lowest):
            asked = lowest
    return asked


def _last_user_text(body: dict[str, Any]) -> str:
    if isinstance(body.get("prompt"), str):  # a legacy completion
        return str(body["prompt"])
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


async def admit(request: Request, state: GatewayState, endpoint: str, body: dict[str, Any], *,
                floor: str = "open") -> Prepared:
    """``prepare`` on the event loop when the database answers at once, else in a worker thread.

    ``floor`` is the lowest classification the call may run under beyond the key's and organisation's:
    a continued conversation's (gateway/stored.py).

    On SQLite, a request's reads (key, catalogue stamp, budget) take tens of microseconds, less than
    handing them to a thread; its rare writes (a rate-limit claim, the key's last-use stamp) may meet
    another process's write lock, and then the whole preparation moves to a thread instead of
    blocking the loop. Over a network database every statement is a round trip: always a thread.
    """
    try:
        if request.app.state.db.dialect == "sqlite":
            try:
                return prepare(request, state, endpoint, body, wait=False, floor=floor)
            except _WouldWait:
                pass
        return await run_in_threadpool(prepare, request, state, endpoint, body, floor=floor)
    except Turned as turned:
        # Written by the group commit like any finished call: a flood of refusals shares commits.
        await state.writer.submit(turned.call, None, state.counters)
        if isinstance(turned.error, Refused):
            turned.error.audited = True
        raise turned.error from None


def prepare(request: Request, state: GatewayState, endpoint: str, body: dict[str, Any], *,
            wait: bool = True, floor: str = "open") -> Prepared:
    """Everything that needs the database before the upstream call."""
    db: Database = request.app.state.db
    if wait:
        def work() -> Prepared:
            # PostgreSQL: the reads and the single-statement writes commit on their own (fewer round trips).
            with db.session_autocommit() as session:
                return _prepare(request, session, db.session, state, endpoint, body, floor)

        return db.reconnecting(work)  # nothing is written before the reads that would meet a dropped link
    with db.session_nowait() as session:
        try:
            return _prepare(request, session, db.session_nowait, state, endpoint, body, floor)
        except OperationalError as exc:
            if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
                raise
            session.rollback()
            raise _WouldWait from exc


def _prepare(request: Request, session: Session, transaction: Callable[[], AbstractContextManager[Session]],
             state: GatewayState, endpoint: str, body: dict[str, Any], floor: str = "open") -> Prepared:
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
    classification = _classification(request, binding, floor)
    call = Call(actor=who.actor, key_prefix=who.key_prefix or "", organisation_id=organisation_id,
                model=body["model"], endpoint=endpoint, classification=classification, person_id=who.user_id,
                spend=binding.spend, tpm_key=who.key_prefix or "" if binding.tokens_per_minute else "")
    try:
        limits.allowed_model(binding, who, call.model)
        periods = limits.admit(session, state.counters, state.leases, who, binding, utcnow())
    except (limits.OverLimit, Refused) as exc:
        raise _turned(call, exc) from exc
    call.person_period = periods.person
    model = snap.models.get(body["model"])
    if model is None or not model.enabled:
        state_of = "does not exist" if model is None else "is disabled by an admin"
        raise NotFound(f"the model {body['model']!r} {state_of}", field="model")
    if binding.keep_days:
        call.keep_days = binding.keep_days
        call.prompt = orjson.dumps(body.get("messages") or body.get("input") or body.get("prompt")).decode()
    if model.language_routing:
        call.language = state.detector.detect(_last_user_text(body)) or ""
    # Process decisions do not depend on who asks, so a plan serves every request of its kind.
    # A declared fallback model's deployments follow the model's own, each checked by policy.
    models = [model, *(snap.models[name] for name in model.fallbacks if name in snap.models)]
    plans = [(m, _plan(snap, m, classification)) for m in models]
    if not any(p.allowed for _, p in plans):
        with transaction() as tx:
            _refuse(tx, state, call, {name: why for _, p in plans for name, why in p.refused.items()})
    language = call.language or None
    candidates = backends.serving([c for m, p in plans for c in routing.order(
        p.allowed, language, strategy=m.routing, health=state.breakers)], endpoint)
    if not candidates:
        raise BadInput(f"no deployment of {model.name} serves /v1/{endpoint}", field="model")
    found = cache.lookup_for(organisation_id, snap.cache_ttl.get(organisation_id or 0), endpoint, model.name,
                             classification, body, request.headers.get("cache-control", ""))
    prepared = Prepared(call, candidates, periods.organisation, found, response_days=binding.response_days)
    if binding.max_concurrency and who.key_prefix:
        if not state.inflight.acquire(who.key_prefix, binding.max_concurrency):
            raise _turned(call, limits.OverLimit(
                f"key {who.key_prefix} already has {binding.max_concurrency} calls in flight, its limit",
                retry_after=1, outcome="over_concurrency"))
        prepared.slot = who.key_prefix
    return prepared


def _plan(snap: Snapshot, model: ModelFacts, classification: str) -> routing.Plan:
    plan = snap.plans.get((model.name, classification))
    if plan is None:
        plan = snap.plans[(model.name, classification)] = routing.plan(
            snap.policy, None, classification, model.deployments, model.name)
    return plan


def _turned(call: Call, exc: limits.OverLimit | Refused) -> Turned:
    call.outcome = exc.outcome if isinstance(exc, limits.OverLimit) else "not_allowed"
    call.reasons = exc.reasons or [exc.message]
    return Turned(call, exc)


def _refuse(session: Any, state: GatewayState, call: Call, refused: dict[str, list[str]]) -> None:
    reasons = [f"{name}: {'; '.join(why)}" for name, why in refused.items()] or ["the model has no deployments"]
    call.outcome, call.reasons = "refused", reasons
    record(session, state.counters, call, None)
    state.telemetry.finished(call, (), Timing(time.perf_counter()))
    exc = Refused(f"no deployment of {call.model} may serve a {call.classification} request; "
                  f"candidates refused: {' | '.join(reasons)}", action=f"gateway.{call.endpoint}", reasons=reasons)
    exc.audited = True
    raise exc


def _judge(cand: Candidate, status: int) -> None:
    """Raise for a status that is the deployment's failure; return for success or the caller's own error."""
    if status in MISCONFIGURED:
        raise UpstreamMisconfigured(f"HTTP {status}: the upstream refused the gateway's request; check the "
                                    f"deployment's API key, base URL and upstream model")
    if status in TRANSIENT or status >= 500:
        raise UpstreamFailed(f"HTTP {status}")


def _scrub(text: str, cand: Candidate) -> str:
    if cand.api_key:
        text = text.replace(cand.api_key, REDACTED)
    return _SECRETS.sub(REDACTED, text)[:1000]


def _client_error(cand: Candidate, status: int, content: bytes) -> Response:
    """The upstream says the request itself is wrong: tell the caller why, in OpenAI's shape, filtered.

    Only the error's message, type, param and code are kept (strings, bounded, secrets redacted); any other
    field an upstream adds (its request dump, headers, internal ids) stays behind.
    """
    error: dict[str, Any] = {"message": f"the model server refused the request (HTTP {status})",
                             "type": "invalid_request_error", "param": None, "code": None}
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    found = data.get("error") if isinstance(data, dict) else None
    if isinstance(found, str):
        found = {"message": found}
    if isinstance(found, dict):
        for name in ("message", "type", "param", "code"):
            value = found.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool):
                error[name] = _scrub(str(value), cand)
    error["deployment"] = cand.name
    return Response(orjson.dumps({"error": error}), status_code=status, media_type="application/json")


def _refusal(backend: backends.Backend, cand: Candidate, resp: http1.Response, content: bytes) -> Response:
    """The request itself is wrong (the upstream says so): its answer passed on, filtered; no failover.

    Judged again by what the backend reads in the body, which can say more than the status does (Bedrock
    answers a model id it does not know with 400): a refusal of the gateway's own configuration is raised.
    """
    status, error = backend.error(content, resp.status, resp.headers)
    _judge(cand, status)
    return _client_error(cand, status, error)


async def _request(state: GatewayState, backend: backends.Backend, cand: Candidate, path: str,
                   body: dict[str, Any], stream: bool) -> tuple[str, bytes, dict[str, str], str]:
    """The upstream call's URL, body and headers, and the access token it carries ("" when none).

    A token is made from the deployment's key off the event loop and kept (gateway/tokens.py); a key the
    token endpoint refuses is the deployment's misconfiguration, like an upstream's 401.
    """
    url, payload, headers = backend.request(cand, path, body, stream)
    if backend.access_token is None:
        return url, payload, headers, ""
    try:
        token = await state.tokens.get(cand, backend.access_token)
    except TokenRefused as exc:
        raise UpstreamMisconfigured(str(exc)) from exc
    except TokenFailed as exc:
        raise UpstreamFailed(str(exc)) from exc
    headers["authorization"] = f"Bearer {token}"
    return url, payload, headers, token


async def _post(state: GatewayState, cand: Candidate, path: str, body: dict[str, Any]) -> dict[str, Any] | Response:
    backend = backends.of(cand)
    url, payload, headers, token = await _request(state, backend, cand, path, body, False)
    try:
        resp = await state.client.post(url, payload, headers, cand.timeout)
        content = await resp.read()
    except http1.TimedOut as exc:
        raise UpstreamTimedOut(str(exc)) from exc
    except http1.UpstreamError as exc:
        raise UpstreamFailed(str(exc)) from exc
    if resp.status == 401 and token:
        state.tokens.drop(cand.id, token)  # expired or revoked early: the next call fetches another
    _judge(cand, resp.status)
    if resp.status >= 400:
        return _refusal(backend, cand, resp, content)
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFailed("not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamFailed("not a JSON object")
    return backend.answer(data)


def _meter(call: Call, cand: Candidate, usage: dict[str, Any] | None) -> None:
    usage = usage or {}
    call.tokens_out = int(usage.get("completion_tokens") or 0)
    prompt = usage.get("prompt_tokens")
    if prompt is None:  # rerankers report only a total
        prompt = int(usage.get("total_tokens") or 0) - call.tokens_out
    call.tokens_in = max(0, int(prompt or 0))
    call.estimated = False
    _price(call, cand)


def _price(call: Call, cand: Candidate) -> None:
    call.cost = (call.tokens_in * cand.price_in + call.tokens_out * cand.price_out) / 1_000_000
    call.currency = cand.facts.get("currency", "")


def _estimate(call: Call, cand: Candidate, body: dict[str, Any]) -> None:
    """No usage from the upstream (it sent none, or the stream ended before it): count what was relayed."""
    prompt = text_of(body)
    call.tokens_in = estimate_tokens(*split_text(prompt))
    call.tokens_out = estimate_tokens(call.relayed_ascii, call.relayed_other)
    call.estimated = True
    _price(call, cand)


def _response_headers(call: Call) -> dict[str, str]:
    headers = {"x-sovstack-deployment": call.answered, "x-sovstack-tries": str(len(call.tried)),
               "x-sovstack-classification": call.classification, "x-sovstack-language": call.language}
    if call.fallback:
        headers["x-sovstack-fallback"] = call.fallback
    return headers


async def _finish(request: Request, state: GatewayState, prepared: Prepared) -> None:
    prepared.call.latency_ms = (time.perf_counter() - prepared.started) * 1000
    prepared.release(state)
    state.telemetry.finished(prepared.call, prepared.candidates, Timing(
        prepared.started, prepared.upstream_seconds, prepared.first_event), request.headers)
    await state.writer.submit(prepared.call, prepared.budget_period, state.counters)


async def _all_failed(request: Request, state: GatewayState, prepared: Prepared, failures: list[str],
                      misconfigured: int) -> Exception:
    call = prepared.call
    call.outcome, call.reasons = "failed", failures
    await _finish(request, state, prepared)
    message = f"no deployment of {call.model} answered: {'; '.join(failures) or 'all circuits open'}"
    if failures and misconfigured == len(failures):
        return BadGateway(message + " (the gateway's own configuration; the operator has been told by the audit log)",
                          reasons=failures)
    return Unavailable(message, reasons=failures)


MAX_BACKOFF_SECONDS = 2.0


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff: 0–100 ms, then 0–200 ms, … (bounded)."""
    return random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.1 * 2 ** attempt))


async def _failover(request: Request, state: GatewayState, prepared: Prepared,
                    attempt: Callable[[Candidate], Awaitable[T]]) -> tuple[Candidate, T]:
    """Try the allowed deployments in order, past open circuits, until ``attempt`` succeeds on one.

    A transient failure is tried again on the same deployment up to its ``retries`` (with backoff) before
    the next one. Whatever ends the call (success, failure, the client going away) the deployment's
    in-flight count is given back and a half-open probe is released, so no circuit is left waiting on a
    call nobody will finish. A success leaves the deployment ``in_flight`` until ``_settle``.
    """
    call, failures, misconfigured = prepared.call, [], 0
    for cand in prepared.candidates:
        breaker = state.breakers.of(cand.id, cand.failures_to_open, cand.cool_down_seconds)
        for tried in range(cand.retries + 1):
            if not breaker.allows():
                failures.append(f"{cand.name}: circuit open")
                break
            if tried:
                await anyio.sleep(_backoff(tried))
            call.tried.append(cand.name)
            breaker.in_flight += 1
            began = time.perf_counter()
            try:
                result = await attempt(cand)
            except UpstreamFailed as exc:
                breaker.in_flight -= 1
                breaker.failed()
                failures.append(f"{cand.name}: {exc}")
                if isinstance(exc, UpstreamMisconfigured):
                    misconfigured += 1
                if not exc.retryable:
                    break
                continue
            except BaseException:
                breaker.in_flight -= 1
                breaker.released()  # cancelled (the client hung up) or a bug: no verdict on the deployment
                raise
            took = time.perf_counter() - began
            breaker.observe(took * 1000)
            call.answered, prepared.upstream_seconds = cand.name, took
            if cand.model and cand.model != call.model:
                call.fallback = cand.model
            return cand, result
    raise await _all_failed(request, state, prepared, failures, misconfigured)


def _settle(state: GatewayState, cand: Candidate, verdict: bool | None) -> None:
    """The call on ``cand`` is over: True it answered, False it failed, None nothing learned (hang-up)."""
    breaker = state.breakers.of(cand.id, cand.failures_to_open, cand.cool_down_seconds)
    breaker.in_flight -= 1
    if verdict is True:
        breaker.succeeded()
    elif verdict is False:
        breaker.failed()
    else:
        breaker.released()


async def forward(request: Request, state: GatewayState, prepared: Prepared, body: dict[str, Any]) -> Response:
    """Try the allowed deployments in order until one answers (non-streaming); or the organisation's cache."""
    call, found, answers = prepared.call, prepared.cached, state.answers
    if found is not None and found.read and answers is not None:
        kept = await run_in_threadpool(answers.get, found)
        if kept is not None:
            call.outcome = "cached"
            await _finish(request, state, prepared)
            return Response(kept, media_type="application/json",
                            headers={**_response_headers(call), cache.HEADER: "hit"})
    cand, result = await _failover(request, state, prepared,
                                   lambda c: _post(state, c, PATHS[call.endpoint], body))
    _settle(state, cand, True)  # a client error proves the deployment alive as much as an answer does
    if isinstance(result, Response):
        call.outcome, call.reasons = "upstream_error", [f"{cand.name}: HTTP {result.status_code}"]
        await _finish(request, state, prepared)
        result.headers.update(_response_headers(call))
        return result
    if result.get("usage"):
        _meter(call, cand, result.get("usage"))
    else:
        for choice in result.get("choices") or []:
            if isinstance(choice, dict):
                count_text(call, str((choice.get("message") or {}).get("content") or choice.get("text") or ""))
        _estimate(call, cand, body)
    if call.keep_days:
        call.completion = [str(c.get("message", {}).get("content") or c.get("text") or "")
                           for c in result.get("choices") or []]
    result["model"] = cand.model or call.model
    await _finish(request, state, prepared)
    answer, headers = orjson.dumps(result), _response_headers(call)
    if found is not None and answers is not None:
        await run_in_threadpool(answers.put, found, answer)
        headers[cache.HEADER] = "miss"
    return Response(answer, media_type="application/json", headers=headers)


async def _open_stream(state: GatewayState, cand: Candidate, path: str,
                       body: dict[str, Any]) -> backends.Stream | Response:
    backend = backends.of(cand)
    url, payload, headers, token = await _request(state, backend, cand, path, body, True)
    try:
        resp = await state.client.post(url, payload, headers, cand.timeout)
    except http1.TimedOut as exc:
        raise UpstreamTimedOut(str(exc)) from exc
    except http1.UpstreamError as exc:
        raise UpstreamFailed(str(exc)) from exc
    if resp.status == 401 and token:
        state.tokens.drop(cand.id, token)
    if resp.status >= 300:
        try:
            _judge(cand, resp.status)
            content = await resp.read(64 * 1024)  # the caller's own error: read it to relay it, filtered
        except http1.UpstreamError:
            content = b""
        finally:
            resp.close()
        return _refusal(backend, cand, resp, content)
    return backend.stream(resp)


async def stream(request: Request, state: GatewayState, prepared: Prepared, body: dict[str, Any]) -> Response:
    """Open a stream on the first deployment that answers, then relay it chunk by chunk.

    Its circuit is told of success only at ``[DONE]``: a stream that dies half-way counts as a failure.
    An upstream that refuses the request as the caller's error (4xx other than its own configuration) has
    its filtered answer passed on; it is the caller's, and never counts against the deployment.
    """
    prepared.wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    call = prepared.call
    path = PATHS[call.endpoint]
    cand, resp = await _failover(request, state, prepared, lambda c: _open_stream(state, c, path, body))
    if isinstance(resp, Response):
        _settle(state, cand, True)
        call.outcome, call.reasons = "upstream_error", [f"{cand.name}: HTTP {resp.status_code}"]
        await _finish(request, state, prepared)
        resp.headers.update(_response_headers(call))
        return resp
    return Relayed(_relay(request, state, prepared, cand, resp, body),
                   lambda: _hung_up(request, state, prepared, cand, resp, body, metered=False),
                   media_type="text/event-stream", headers=_response_headers(call))


class Relayed(StreamingResponse):
    """A relayed stream whose clean-up runs even when its body never started.

    Starlette races the body against the client's disconnect: a client already gone can cancel the body
    before the relay's first step, and a generator that never ran never runs its ``finally`` — the key's
    concurrency slot, the deployment's in-flight count and the call's metering would be lost with it.
    """

    def __init__(self, body: AsyncIterator[bytes], abandon: Callable[[], Awaitable[None]], **kw: Any) -> None:
        super().__init__(body, **kw)
        self._abandon, self._started = abandon, False

    async def _body(self, body: AsyncIterable[str | bytes | memoryview]) -> AsyncIterator[str | bytes | memoryview]:
        self._started = True
        async for chunk in body:
            yield chunk

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        relay = self.body_iterator
        self.body_iterator = self._body(relay)
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._started:
                with anyio.CancelScope(shield=True):
                    await relay.aclose()  # type: ignore[attr-defined]
                    await self._abandon()


def _error_event(message: str) -> bytes:
    return b"data: " + orjson.dumps({"error": {"message": message, "type": "upstream_error",
                                               "code": "stream_interrupted"}}) + b"\n\n"


async def _relay(request: Request, state: GatewayState, prepared: Prepared, cand: Candidate,
                 resp: backends.Stream, body: dict[str, Any]) -> AsyncIterator[bytes]:
    """Relay the upstream's events as the client's; meter from the usage event, or estimate when none came.

    The events are parsed per the SSE specification (``sse.Parser``) and written back in one canonical
    form, one write per event. The call is metered whatever ends it: ``[DONE]``, a failure mid-stream,
    the upstream closing early, or the client hanging up (then for what was relayed until then).
    """
    call = prepared.call
    deadline = time.monotonic() + min(STREAM_MAX_SECONDS, cand.timeout * STREAM_TIMEOUT_FACTOR)
    parser, verdict, metered = sse.Parser(), None, False
    try:
        async for data in resp.iter_bytes():
            if time.monotonic() > deadline:
                raise UpstreamFailed("the stream went on past its time limit")
            out = bytearray()
            for event in parser.feed(data):
                if event.data.strip() == "[DONE]":
                    if out:  # what came before the end goes out now, not after the metering below
                        if prepared.first_event is None:
                            prepared.first_event = time.perf_counter()
                        yield bytes(out)
                    # Metered and audited before the client sees the end, so usage is never behind the client.
                    verdict = True
                    if not metered:
                        _estimate(call, cand, body)
                    _settle(state, cand, True)
                    await _finish(request, state, prepared)
                    yield b"data: [DONE]\n\n"
                    return
                relayed, usage = _relay_event(call, cand, event, prepared.wants_usage)
                metered = metered or usage
                if relayed is not None:
                    out += relayed
            if out:
                if prepared.first_event is None:
                    prepared.first_event = time.perf_counter()
                yield bytes(out)
        raise UpstreamFailed("the upstream closed the stream before [DONE]")
    except (http1.UpstreamError, UpstreamFailed) as exc:
        verdict = False
        call.outcome, call.reasons = "interrupted", [f"{cand.name}: {exc or type(exc).__name__} mid-stream"]
        if not metered:
            _estimate(call, cand, body)
        _settle(state, cand, False)
        await _finish(request, state, prepared)
        yield _error_event(f"the upstream {cand.name} failed mid-stream; the answer is incomplete")
    finally:
        # When the client went away the generator is being cancelled: shield the clean-up and the metering.
        with anyio.CancelScope(shield=True):
            if verdict is None:
                await _hung_up(request, state, prepared, cand, resp, body, metered)
            else:
                resp.close()


async def _hung_up(request: Request, state: GatewayState, prepared: Prepared, cand: Candidate,
                   resp: backends.Stream, body: dict[str, Any], metered: bool) -> None:
    """The client left before the end: meter what the call consumed (the prompt, and what was relayed)."""
    resp.close()
    prepared.call.outcome = "client_closed"
    if not metered:
        _estimate(prepared.call, cand, body)
    _settle(state, cand, None)
    await _finish(request, state, prepared)


def _relay_event(call: Call, cand: Candidate, event: sse.Event, wants_usage: bool) -> tuple[bytes | None, bool]:
    """The event as the client gets it (None: not relayed), and whether it carried the upstream's usage."""
    try:
        chunk = orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFailed("garbage in the stream") from exc
    metered = False
    if isinstance(chunk, dict):
        if chunk.get("error") is not None and not chunk.get("choices"):
            raise UpstreamFailed("the upstream sent an error event")  # relayed as our own, never as theirs
        if chunk.get("usage"):
            _meter(call, cand, chunk["usage"])
            metered = True
            if not wants_usage and not chunk.get("choices"):
                return None, True  # the usage-only chunk we asked for on the client's behalf
        chunk["model"] = cand.model or call.model
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                content = (choice.get("delta") or {}).get("content") or choice.get("text")
                if isinstance(content, str) and content:
                    count_text(call, content)
                    if call.keep_days:
                        call.completion.append(content)
    return b"data: " + orjson.dumps(chunk) + b"\n\n", metered
