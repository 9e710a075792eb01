"""ASGI middleware: request size limit, Prometheus request metrics, security headers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sovstack.core import request_id
from sovstack.core.errors import BadInput, PayloadTooLarge, SovstackError
from sovstack.core.settings import shared_metrics_folder

# Pages and API answers may load only what this server serves: the console works air-gapped.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class Metrics:
    """A registry per app (never the process-global one), so two apps in a process stay apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sovstack_http_requests", "HTTP requests handled",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("sovstack_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry)
        self.per_process: list[Collector] = []  # read at scrape time from this process only (circuits)

    def add_per_process(self, collector: Collector) -> None:
        """A collector of this process's own state, read when scraped."""
        self.registry.register(collector)
        self.per_process.append(collector)

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format: with several workers, counters and histograms summed over
        all of them, plus the per-process state of the one answering."""
        folder = shared_metrics_folder()
        if not folder:
            return bytes(generate_latest(self.registry))
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=folder)  # type: ignore[no-untyped-call]
        for collector in self.per_process:
            merged.register(collector)
        return bytes(generate_latest(merged))


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse bodies over ``max_bytes`` with 413 before the handler reads them.

    Upload routes (``uploads``: regular expressions matched against ``POST`` paths) stream their
    bodies to disk and get ``upload_max_bytes`` instead; the model gateway's ``POST /v1/…`` calls get
    ``gateway_max_bytes`` (prompts carry images and documents inline).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: Sequence[str] = (), upload_max_bytes: int = 0,
                 gateway_max_bytes: int = 0) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.uploads = [re.compile(p) for p in uploads]
        self.upload_max_bytes = upload_max_bytes
        self.gateway_max_bytes = gateway_max_bytes or max_bytes

    def _limit(self, scope: Scope) -> int:
        if scope["method"] == "POST":
            if scope["path"].startswith("/v1/"):
                return self.gateway_max_bytes
            if any(p.fullmatch(scope["path"]) for p in self.uploads):
                return self.upload_max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        shape = "anthropic" if scope["path"].startswith("/v1/messages") else \
            "openai" if scope["path"].startswith("/v1/") else "api"
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            # No name, id or filter has a NUL in it; file paths and PostgreSQL text cannot hold one.
            await self._answer(send, shape, BadInput("NUL characters are not allowed in the URL", field="url"))
            return
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, shape, limit)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, shape, limit)

    async def _refuse(self, send: Send, shape: str, limit: int) -> None:
        await self._answer(send, shape, PayloadTooLarge(f"request body larger than {limit} bytes", field="body"))

    async def _answer(self, send: Send, shape: str, err: SovstackError) -> None:
        """``shape``: "api" (/api), "openai" (/v1) or "anthropic" (/v1/messages)."""
        payload = {"api": err.body, "openai": err.openai_body, "anthropic": err.anthropic_body}[shape]()
        body = json.dumps(payload).encode()
        status = 400 if shape != "api" and err.status == 422 else err.status
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class Observe:
    """Count and time every request by route template; give it a request id (``x-request-id``, answered
    back, in audit events and log lines); add security headers to every answer, server errors included
    (which is why an unexpected error is answered here, inside the headers)."""

    def __init__(self, app: ASGIApp, metrics: Metrics,
                 on_unexpected: Callable[[Request, Exception], Awaitable[Response]] | None = None) -> None:
        self.app, self.metrics, self.on_unexpected = app, metrics, on_unexpected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, started = [500], [False]
        rid = request_id.accept(_header(scope, b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id.bind(rid)
        extra = [*_security_headers(scope), (b"x-request-id", rid.encode())]

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0], started[0] = message["status"], True
                headers: list[Any] = list(message.get("headers", []))
                have = {name.lower() for name, _ in headers}
                message["headers"] = headers + [(name, value) for name, value in extra if name not in have]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        except Exception as exc:  # the boundary: logged by the handler, answered with every header
            if self.on_unexpected is None or started[0]:
                raise
            response = await self.on_unexpected(Request(scope), exc)
            await response(scope, receive, wrapped)
        finally:
            request_id.unbind(token)
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], name, str(status[0])).inc()
            self.metrics.latency.labels(scope["method"], name).observe(time.perf_counter() - start)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
               (b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY")]
    if scope.get("scheme") == "https":
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    sent = dict(scope.get("headers", []))
    if not scope.get("path", "").startswith("/static/") and (
            b"authorization" in sent or b"sovstack_session=" in sent.get(b"cookie", b"")):
        headers.append((b"cache-control", b"no-store"))  # a signed-in answer must not sit in a shared cache
    return headers


Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class DirectRoute:
    """What ``Observe`` reads off ``scope["route"]`` for its metrics label."""

    path: str


class Direct:
    """Serve a few hot routes without the router and the dependency machinery.

    For endpoints that take only the request and do their own authentication (the model gateway's
    ``/v1`` calls, where the framework's dispatch cost as much as the gateway's own work). It sits
    inside ``Observe`` and ``BodyLimit``, so metrics, security headers and the body limit still apply,
    and errors are answered by the same handlers as on routed requests. The routes stay registered
    on the app too (for the route walk and the reference), but requests never reach them there.
    """

    def __init__(self, app: ASGIApp, routes: dict[tuple[str, str], Endpoint],
                 on_error: Callable[[Request, Exception], Awaitable[Response]],
                 handled: tuple[type[Exception], ...]) -> None:
        # Errors outside ``handled`` go up as on routed requests: the body limit and the last-resort
        # handler (which logs the bug and answers 500 without a trace) are outside this middleware.
        self.app, self.routes, self.on_error, self.handled = app, routes, on_error, handled
        self._labels = {key: DirectRoute(key[1]) for key in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = (scope.get("method", ""), scope.get("path", ""))
        endpoint = self.routes.get(key) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._labels[key]
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except self.handled as exc:
            response = await self.on_error(request, exc)
        await response(scope, receive, send)
