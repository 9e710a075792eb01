"""A lean HTTP/1.1 client for upstream model servers.

The gateway's hot path spends most of its time talking to upstreams, and a general-purpose client
(redirects, cookies, auth flows, proxies, a pool that polls every idle socket per request) cost more
CPU per call than everything else the gateway does. This client does only what an upstream call
needs: keep-alive connections per host, `POST` with a JSON body, responses parsed by httptools
(llhttp: Content-Length, chunked, or delimited by close), a timeout on connecting and on every wait
for bytes, back-pressure on streams, and a bounded body. TLS comes from the standard library.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httptools

MAX_BODY_BYTES = 64 * 1024 * 1024  # a non-streamed answer larger than this is refused as garbage
HIGH_WATER = 1024 * 1024  # stop reading a stream when this much is buffered and not yet relayed
MAX_IDLE_PER_HOST = 64
IDLE_SECONDS = 4.0  # a kept-alive connection idle longer is not reused: servers close them (uvicorn after 5 s)


class UpstreamError(Exception):
    """The upstream could not be reached or did not speak HTTP/1.1 properly."""


class ConnectFailed(UpstreamError):
    pass


class TimedOut(UpstreamError):
    pass


class Disconnected(UpstreamError):
    pass


class ProtocolFailed(UpstreamError):
    pass


class MaybeSent(Disconnected):
    """The connection dropped after the request was written and before any answer: it may have arrived."""


@dataclass(frozen=True)
class Target:
    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    host_header: str
    path: str


@lru_cache(maxsize=1024)
def target(url: str) -> Target:
    """Parse an upstream URL once (they come from a small catalogue)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError as exc:
        raise ConnectFailed(f"bad port in {url!r}") from exc
    default = (tls and port == 443) or (not tls and port == 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target((parts.scheme, host, port), host, port, tls, shown if default else f"{shown}:{port}", path)


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ProtocolFailed("a header value holds a line break")
    return value


class _Connection(asyncio.Protocol):
    """One keep-alive connection; its state is one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.idle_limit = IDLE_SECONDS
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.done = False
        self.keep_alive = False
        self.until_close = False
        self.error: UpstreamError | None = None
        self.received = 0
        self.buffered = 0
        self.chunks: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolFailed("the upstream asked to switch protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolFailed(f"not HTTP/1.1: {exc}"))
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        if self.headers_done and self.until_close and not self.done:
            self.done = True
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.done and self.error is None:
            self.error = Disconnected("the upstream closed the connection")
        self._wake()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        names = {n for n, _ in self.headers}
        chunked = any(n == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self.headers)
        self.until_close = (b"content-length" not in names and not chunked
                            and self.status not in (204, 304) and self.status >= 200)
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(bytes(body))
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # the parser forgets it once the message is over
        self.done = True
        for name, value in self.headers:  # "Keep-Alive: timeout=2": the server says when it will close it
            if name == b"keep-alive":
                for part in value.split(b","):
                    key, _, number = part.strip().partition(b"=")
                    if key.lower() == b"timeout" and number.strip().isdigit():
                        self.idle_limit = min(IDLE_SECONDS, max(0.0, int(number) - 1.0))

    # waiting

    def _fail(self, error: UpstreamError) -> None:
        self.error = error
        self.abort()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Wait for anything new (bytes, the end, an error), at most ``timeout`` seconds."""
        if self.error is not None:
            raise self.error
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        return data

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def reusable(self) -> bool:
        return self.done and self.keep_alive and not self.closed and self.error is None and not self.until_close


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimedOut("the upstream did not answer in time"))


class Response:
    """An upstream answer whose body is read once, whole (``read``) or as it comes (``iter_*``)."""

    def __init__(self, client: Client, target: Target, conn: _Connection, timeout: float) -> None:
        self._client, self._target, self._conn, self._timeout = client, target, conn, timeout
        self.status = conn.status
        self.headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in conn.headers}
        self._released = False

    async def read(self, limit: int = MAX_BODY_BYTES) -> bytes:
        conn, parts, size = self._conn, [], 0
        try:
            while True:
                if conn.chunks:
                    part = conn.take()
                    size += len(part)
                    if size > limit:
                        raise ProtocolFailed(f"the answer is larger than {limit} bytes")
                    parts.append(part)
                if conn.done:
                    return b"".join(parts)
                await conn.wait(self._timeout)
        finally:
            self.close()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        conn = self._conn
        try:
            while True:
                if conn.chunks:
                    yield conn.take()
                if conn.done:
                    return
                await conn.wait(self._timeout)
        finally:
            self.close()

    async def iter_lines(self) -> AsyncIterator[str]:
        """Text lines without their ending (``\\n`` or ``\\r\\n``); a last unterminated line too."""
        pending = b""
        async for data in self.iter_bytes():
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")

    def close(self) -> None:
        """Give the connection back when the answer was read whole; otherwise drop it."""
        if self._released:
            return
        self._released = True
        self._client.release(self._target, self._conn)


class Client:
    """Keep-alive connections per (scheme, host, port); one request per connection at a time."""

    def __init__(self, *, max_idle_per_host: int = MAX_IDLE_PER_HOST, ssl_context: ssl.SSLContext | None = None,
                 user_agent: str = "sovstack") -> None:
        self.max_idle = max_idle_per_host
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._agent = _header_value(user_agent)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, t: Target, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), t.host, t.port,
                    ssl=self._tls() if t.tls else None, server_hostname=t.host if t.tls else None)
        except TimeoutError as exc:
            raise TimedOut(f"connecting to {t.host_header} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {t.host_header}: {exc.strerror or exc}") from exc
        return conn

    def _pooled(self, t: Target) -> _Connection | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to the loop that opened them (tests run several)
            self._loop, self._idle = loop, {}
        idle = self._idle.get(t.key)
        now = loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < conn.idle_limit:
                conn.reused = True
                return conn
            conn.abort()
        return None

    def release(self, t: Target, conn: _Connection) -> None:
        if conn.reusable() and conn.loop is self._loop:
            idle = self._idle.setdefault(t.key, [])
            if len(idle) < self.max_idle:
                limit = conn.idle_limit
                conn._reset()
                conn.idle_limit, conn.idle_since = limit, conn.loop.time()
                idle.append(conn)
                return
        conn.abort()

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        """Send a POST and wait for the answer's status and headers (the body is read from the Response)."""
        t = target(url)
        head = [f"POST {t.path} HTTP/1.1", f"Host: {t.host_header}", f"User-Agent: {self._agent}",
                "Accept: */*", f"Content-Length: {len(body)}"]
        head += [f"{name}: {_header_value(value)}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        conn = self._pooled(t) or await self._connect(t, timeout)
        assert conn.transport is not None
        try:
            conn.transport.write(request)
            while not conn.headers_done:
                await conn.wait(timeout)
        except Disconnected as exc:
            conn.abort()
            if conn.reused and conn.received == 0:
                # A POST is not idempotent and nothing proves the upstream did not get (and act on) it, so it
                # is not silently sent again: the caller decides (a deployment's retries, or failover).
                raise MaybeSent("the upstream closed a kept-alive connection as the request went out; it may "
                                "have received it") from exc
            raise
        except BaseException:
            conn.abort()
            raise
        return Response(self, t, conn, timeout)

    async def aclose(self) -> None:
        if self._loop is asyncio.get_running_loop():
            for idle in self._idle.values():
                for conn in idle:
                    conn.abort()
        self._idle.clear()
