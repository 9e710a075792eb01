"""Benchmark of the model gateway: sovstack between OpenAI clients and a minimal upstream, against the upstream alone.

    python bench/gateway.py [--quick] [--long] [--no-quotas] [--profile] [--responses]

Starts a minimal OpenAI-compatible upstream (raw asyncio, its own process) and `sovstack serve
--workers 2` on 127.0.0.1, on a fresh SQLite deployment in a temporary folder — or, when
``SOVSTACK_DATABASE_URL`` is set, on that PostgreSQL database, whose ``public`` schema it DROPS and
recreates first (use ``sovstack_bench``, never ``test``). Auth, quotas, policy, metering and audit
are all on. Client processes load both with keep-alive httpx clients for a fixed time; the
server's CPU and memory are read from /proc. Prints each figure beside the direct-to-upstream
figure and the issue's goal, with ratios (goal ratios >= 1.0 meet the goal).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import platform
import pstats
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

# The sibling bench/core.py (python puts the script's folder on sys.path).
from core import SECRET, free_port, fresh_deployment, running_server
from sovstack.core import identity, parties
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.identity import CORE_SCOPES
from sovstack.core.schemas import (
    ApiKeyCreate,
    MembershipCreate,
    OrganisationCreate,
    PartyCreate,
    UserCreate,
)
from sovstack.core.settings import Settings
from sovstack.gateway import http1, service
from sovstack.gateway.schemas import BudgetSet, Catalogue, KeyPolicySet

OPERATOR = Principal.system("bench")
SERVER_WORKERS = 2
CLIENT_PROCESSES = 4          # at concurrency 32: 4 processes × 8 requests in flight each
STREAM_EVENTS = 22            # data events per stream, then [DONE]
LONG_REQUESTS = 100_000
MODEL = "bench-chat"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The goals (issue #3, "Performance").
GOAL_RPS_C32 = 2_000
GOAL_ADDED_P50_MS = 1.0
GOAL_CPU_MS_PER_REQ = 0.5
GOAL_CPU_MS_PER_CHUNK = 0.05

# LiteLLM 1.108.7, 1 worker, no DB, same machine and upstream (/work/shared/reference/gateway.md).
LITELLM = {"rps_c1": 73.6, "p50_c1": 13.1, "added_p50_c1": 13.0, "rps_c32": 100.7, "p50_c32": 279.0,
           "cpu_ms": 9.1, "stream_rps_c32": 31.9, "stream_cpu_ms": 26.5, "stream_ttft_added": 13.4,
           "rss_mib": "324 → 409"}

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 32}
RESPONSES_BODY = {"model": MODEL, "input": "Say hello in one short sentence.", "max_output_tokens": 32}


@dataclass(frozen=True)
class Sizes:
    seconds: float  # of each load run
    warmup: float


FULL = Sizes(seconds=10.0, warmup=1.0)
QUICK = Sizes(seconds=3.0, warmup=0.5)


# The minimal upstream ---------------------------------------------------------------------------

def _completion() -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000, "model": "bench-upstream",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello! How can I help you today?"}}],
        "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23}})


def _stream_body() -> bytes:
    """22 SSE events (20 deltas, the finish, the usage) and [DONE], as HTTP/1.1 chunks, one per event."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "bench-upstream"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]}
              for i in range(STREAM_EVENTS - 2)]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 14, "completion_tokens": 20,
                                                     "total_tokens": 34}})
    out = b""
    for data in [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]:
        out += b"%x\r\n%s\r\n" % (len(data), data)
    return out + b"0\r\n\r\n"


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    plain, streamed = _completion(), _stream_body()
    plain_head = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                  % len(plain))
    stream_head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for header in head.split(b"\r\n")[1:]:
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = orjson.loads(await reader.readexactly(length)) if length else {}
            writer.write(stream_head + streamed if body.get("stream") else plain_head + plain)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def run_upstream(port: int) -> None:
    """The upstream process: HTTP/1.1 keep-alive, one fixed answer; never sleeps."""
    async def main() -> None:
        server = await asyncio.start_server(_answer, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextmanager
def running_upstream() -> Iterator[tuple[str, int]]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=run_upstream, args=(port,), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or not process.is_alive():
                    raise SystemExit("the upstream did not start") from None
                time.sleep(0.05)
        assert process.pid is not None
        yield f"http://127.0.0.1:{port}/v1", process.pid
    finally:
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


# The deployment -------------------------------------------------------------------------------------

PARTIES = [PartyCreate(name="Bench Cloud", kinds=["compute_provider", "model_host"], jurisdiction="IN"),
           PartyCreate(name="Bench Models", kinds=["model_developer"], jurisdiction="IN")]


def provision(db: Database, upstream: str, quotas: bool) -> str:
    """Parties, a model with one deployment, an organisation, a member and a read+gateway key."""
    with db.session() as s, unit_of_work(s, OPERATOR):
        for party in PARTIES:
            parties.create_party(s, OPERATOR, party)
        service.apply_catalogue(s, OPERATOR, db.settings, Catalogue.model_validate({"models": [{
            "name": MODEL, "deployments": [{
                "name": "bench-upstream", "base_url": upstream, "upstream_model": "bench-upstream",
                "api_key": "bench-upstream-key", "hosting_jurisdiction": "IN", "operator": "Bench Cloud",
                "developer": "Bench Models", "licence": "Apache-2.0", "open_weights": True,
                "languages": [{"code": "en", "tier": "high"}], "price_in": 0.1, "price_out": 0.2}]}]}))
        org = identity.create_organisation(s, OPERATOR, OrganisationCreate(name="Bench University",
                                                                           kind="academic", jurisdiction="IN"))
        user = identity.create_user(s, OPERATOR, UserCreate(email="member@bench.example", name="member",
                                                            password="bench password 1234"))
        s.flush()
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user.id, organisation_id=org.id,
                                                              role="member"))
        key, secret = identity.create_api_key(
            s, OPERATOR, ApiKeyCreate(name="bench", scopes=["read", "gateway"], user_id=user.id,
                                      organisation_id=org.id), known_scopes=[*CORE_SCOPES, "gateway"])
        s.flush()
        if quotas:
            # Generous limits: every request pays for the checks, none is refused.
            service.set_key_policy(s, OPERATOR, key.prefix, KeyPolicySet(requests_per_minute=10_000_000))
            service.set_budget(s, OPERATOR, BudgetSet(organisation_id=org.id, tokens=2_000_000_000, period="month"))
    return secret


# /proc -----------------------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """The process and all its descendants (workers of the supervisor), from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (children already reaped are not counted)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / CLK_TCK


def rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            for row in Path(f"/proc/{pid}/status").read_text().splitlines():
                if row.startswith("VmRSS:"):
                    total_kib += int(row.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def workers_of(pid: int) -> list[int]:
    return [p for p in descendants(pid) if p != pid]


# The load ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    url: str
    key: str | None
    model: str
    stream: bool
    in_flight: int      # concurrent requests in this process
    seconds: float
    bound: int          # the most requests this process sends
    lean: bool = True   # sovstack's HTTP/1.1 client on uvloop; False: httpx on asyncio (the earlier figures)


@dataclass(frozen=True)
class ClientRun:
    latencies: list[float]   # whole request, seconds
    first_bytes: list[float]  # time to the first body byte (streams)
    errors: int
    began: float             # time.time(), comparable across processes
    ended: float


async def _client(job: Job) -> ClientRun:
    headers = {"authorization": f"Bearer {job.key}"} if job.key else {}
    responses = job.url.endswith("/v1/responses")  # --responses: the gateway's side speaks the Responses API
    body = orjson.dumps({**(RESPONSES_BODY if responses else BODY), "model": job.model, "stream": job.stream})
    end = b'"type":"response.completed"' if responses else b"data: [DONE]"
    headers["content-type"] = "application/json"
    latencies: list[float] = []
    first_bytes: list[float] = []
    errors = 0
    began = time.time()
    deadline = time.perf_counter() + job.seconds

    async def send(client: Any) -> tuple[bool, float | None]:
        """One request; (answered in full, time of the first body byte)."""
        first, tail = None, b""
        if job.lean:
            resp = await client.post(job.url, body, headers, 30.0)
            async for chunk in resp.iter_bytes():
                first = first or time.perf_counter()
                tail = (tail + chunk)[-64:]
            status = resp.status
        else:
            async with client.stream("POST", job.url, content=body, headers=headers) as resp:
                async for chunk in resp.aiter_raw():
                    first = first or time.perf_counter()
                    tail = (tail + chunk)[-64:]
                status = resp.status_code
        return status == 200 and (not job.stream or end in tail), first

    async def one(client: Any) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) + errors < job.bound:
            start = time.perf_counter()
            try:
                ok, first = await send(client)
            except (httpx.HTTPError, http1.UpstreamError):
                ok, first = False, None
            if ok:
                latencies.append(time.perf_counter() - start)
                first_bytes.append((first or start) - start)
            else:
                errors += 1

    if job.lean:
        client = http1.Client(max_idle_per_host=job.in_flight)
        await asyncio.gather(*(one(client) for _ in range(job.in_flight)))
        await client.aclose()
    else:
        limits = httpx.Limits(max_connections=job.in_flight, max_keepalive_connections=job.in_flight)
        async with httpx.AsyncClient(timeout=30, limits=limits) as hclient:
            await asyncio.gather(*(one(hclient) for _ in range(job.in_flight)))
    return ClientRun(latencies, first_bytes, errors, began, time.time())


def client_process(job: Job) -> ClientRun:
    if job.lean:
        import uvloop

        return uvloop.run(_client(job))
    return asyncio.run(_client(job))


@dataclass(frozen=True)
class Load:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    ttfb_p50_ms: float
    errors: int
    cpu_ms_per_req: float    # of the measured server (sovstack, or the upstream for direct runs)
    rss_mib: tuple[float, float]


def load(url: str, key: str | None, model: str, *, stream: bool, concurrency: int, seconds: float,
         server_pid: int, bound: int = 10_000_000, lean: bool = True) -> Load:
    """Run the clients; the server's CPU and its workers' RSS are read before and after."""
    processes = 1 if concurrency == 1 else CLIENT_PROCESSES
    per_process = concurrency // processes
    job = Job(url, key, model, stream, per_process, seconds, bound // processes, lean)
    pids = descendants(server_pid)
    rss_before, cpu_before = rss_mib(workers_of(server_pid) or pids), cpu_seconds(pids)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        runs = pool.map(client_process, [job] * processes)
    cpu = cpu_seconds(pids) - cpu_before
    rss_after = rss_mib(workers_of(server_pid) or pids)
    latencies = sorted(lat for run in runs for lat in run.latencies)
    first = sorted(f for run in runs for f in run.first_bytes)
    errors = sum(run.errors for run in runs)
    if len(latencies) < 2:
        return Load(len(latencies), 0.0, 0.0, 0.0, 0.0, errors, 0.0, (rss_before, rss_after))
    wall = max(run.ended for run in runs) - min(run.began for run in runs)
    q = statistics.quantiles(latencies, n=100)
    total = len(latencies) + errors
    return Load(len(latencies), len(latencies) / wall, q[49] * 1000, q[98] * 1000,
                statistics.median(first) * 1000, errors, cpu * 1000 / total, (rss_before, rss_after))


# Report --------------------------------------------------------------------------------------------

def ratio(value: float, base: float) -> str:
    return f"{value / base:6.2f}" if base else "   n/a"


def show(label: str, gw: Load, direct: Load) -> None:
    print(f"  {label:<26} gateway {gw.rps:>7,.0f} req/s  p50 {gw.p50_ms:7.2f}  p99 {gw.p99_ms:7.2f} ms  "
          f"cpu {gw.cpu_ms_per_req:5.2f} ms/req  err {gw.errors}", flush=True)
    print(f"  {'':<26} direct  {direct.rps:>7,.0f} req/s  p50 {direct.p50_ms:7.2f}  p99 {direct.p99_ms:7.2f} ms  "
          f"cpu {direct.cpu_ms_per_req:5.2f} ms/req  err {direct.errors}   gateway/direct {ratio(gw.rps, direct.rps)}",
          flush=True)


def goal(label: str, value: float, target: float, unit: str, *, lower_is_better: bool,
         litellm: float | None = None) -> None:
    met = target / value if lower_is_better and value else value / target
    ref = f"   LiteLLM {litellm:>8,.2f}" if litellm is not None else ""
    print(f"  {label:<40} {value:>9,.3f} {unit:<9} goal {'≤' if lower_is_better else '≥'} {target:>7,.2f}  "
          f"ratio {met:5.2f}{ref}", flush=True)


def run(settings: Settings, db: Database, sizes: Sizes, args: argparse.Namespace) -> None:
    with running_upstream() as (upstream, upstream_pid):
        key = provision(db, upstream, quotas=not args.no_quotas)
        db.dispose()
        if args.profile:
            profile(settings, key)
            return
        with running_server(settings, SERVER_WORKERS) as (url, server_pid):
            chat = f"{url}/v1/responses" if args.responses else f"{url}/v1/chat/completions"
            direct_chat = f"{upstream}/chat/completions"
            lean = not args.httpx_client
            print(f"gateway: {SERVER_WORKERS} workers, database {db.dialect}, quotas "
                  f"{'off' if args.no_quotas else 'on'}; {sizes.seconds:.0f} s per run; c=32 is "
                  f"{CLIENT_PROCESSES} client processes × 8; load client "
                  f"{'httpx on asyncio' if args.httpx_client else 'sovstack http1 on uvloop'}", flush=True)

            def both(stream: bool, concurrency: int) -> tuple[Load, Load]:
                for target, k, m, pid in ((chat, key, MODEL, server_pid),
                                          (direct_chat, None, "bench-upstream", upstream_pid)):
                    load(target, k, m, stream=stream, concurrency=1, seconds=sizes.warmup, server_pid=pid,
                         lean=lean)
                gw = load(chat, key, MODEL, stream=stream, concurrency=concurrency, seconds=sizes.seconds,
                          server_pid=server_pid, lean=lean)
                direct = load(direct_chat, None, "bench-upstream", stream=stream, concurrency=concurrency,
                              seconds=sizes.seconds, server_pid=upstream_pid, lean=lean)
                return gw, direct

            rss_start = rss_mib(workers_of(server_pid))
            c1, d1 = both(False, 1)
            c32, d32 = both(False, 32)
            s1, ds1 = both(True, 1)
            s32, ds32 = both(True, 32)
            rss_end = rss_mib(workers_of(server_pid))
            show("non-stream c=1", c1, d1)
            show("non-stream c=32", c32, d32)
            show(f"stream ({STREAM_EVENTS} ev) c=1", s1, ds1)
            show(f"stream ({STREAM_EVENTS} ev) c=32", s32, ds32)
            print(f"  {'stream TTFB p50 c=1':<26} gateway {s1.ttfb_p50_ms:.2f} ms  direct {ds1.ttfb_p50_ms:.2f} ms"
                  f"  added {s1.ttfb_p50_ms - ds1.ttfb_p50_ms:+.2f} ms", flush=True)
            print(f"  {'workers RSS':<26} {rss_start:.0f} MiB at start → {rss_end:.0f} MiB after "
                  f"{c1.requests + c32.requests + s1.requests + s32.requests:,} measured requests", flush=True)
            per_chunk = s32.cpu_ms_per_req / STREAM_EVENTS
            added_chunk = (s32.cpu_ms_per_req - c32.cpu_ms_per_req) / STREAM_EVENTS
            print("goals (issue #3) — ratio ≥ 1.00 meets the goal; LiteLLM 1.108.7 measured on this machine:")
            goal("req/s at c=32 (non-stream)", c32.rps, GOAL_RPS_C32, "req/s", lower_is_better=False,
                 litellm=LITELLM["rps_c32"])
            goal("added p50 at c=1 (non-stream)", c1.p50_ms - d1.p50_ms, GOAL_ADDED_P50_MS, "ms",
                 lower_is_better=True, litellm=LITELLM["added_p50_c1"])
            goal("server CPU per request (c=32)", c32.cpu_ms_per_req, GOAL_CPU_MS_PER_REQ, "ms",
                 lower_is_better=True, litellm=LITELLM["cpu_ms"])
            goal("stream CPU per chunk, added over non-stream", max(added_chunk, 1e-6), GOAL_CPU_MS_PER_CHUNK,
                 "ms", lower_is_better=True)
            print(f"  {'stream CPU per chunk, all in':<40} {per_chunk:>9,.3f} ms        "
                  f"(LiteLLM ≈ {LITELLM['stream_cpu_ms'] / STREAM_EVENTS:.2f})")
            print(f"  LiteLLM also: {LITELLM['rps_c1']} req/s at c=1, stream {LITELLM['stream_rps_c32']} req/s at "
                  f"c=32, TTFT +{LITELLM['stream_ttft_added']} ms, RSS {LITELLM['rss_mib']} MiB (1 worker)")
            if args.long:
                long_run(chat, key, server_pid, lean)


MEMORY_REQUESTS = 1_000


def memory_run(settings: Settings, db: Database) -> None:
    """One worker's resident memory after start-up and after MEMORY_REQUESTS gateway calls (half streams)."""
    with running_upstream() as (upstream, _):
        key = provision(db, upstream, quotas=True)
        db.dispose()
        with running_server(settings, 1) as (url, server_pid):
            time.sleep(1.0)
            start, end = _memory_load(url, key, server_pid)
    print(f"memory: 1 worker, RSS {start:.0f} MiB after start-up → {end:.0f} MiB after {MEMORY_REQUESTS:,} "
          f"gateway requests ({MEMORY_REQUESTS // 2:,} streamed)", flush=True)


def _memory_load(url: str, key: str, server_pid: int) -> tuple[float, float]:
    """RSS before and after the requests; with one worker the server process is the worker."""
    start = rss_mib(workers_of(server_pid) or [server_pid])
    for stream in (False, True):
        load(f"{url}/v1/chat/completions", key, MODEL, stream=stream, concurrency=1, seconds=600,
             server_pid=server_pid, bound=MEMORY_REQUESTS // 2)
    return start, rss_mib(workers_of(server_pid) or [server_pid])


def long_run(chat: str, key: str, server_pid: int, lean: bool) -> None:
    """LONG_REQUESTS requests at c=32: does resident memory stay flat?"""
    start = rss_mib(workers_of(server_pid))
    result = load(chat, key, MODEL, stream=False, concurrency=32, seconds=3600, server_pid=server_pid,
                  bound=LONG_REQUESTS, lean=lean)
    end = rss_mib(workers_of(server_pid))
    print(f"long run: {result.requests + result.errors:,} requests ({result.errors} errors) at "
          f"{result.rps:,.0f} req/s; workers RSS {start:.0f} MiB → {end:.0f} MiB ({end - start:+.0f} MiB)",
          flush=True)


# Profile -------------------------------------------------------------------------------------------

def profile(settings: Settings, key: str, requests: int = 2_000) -> None:
    """cProfile of the app in-process (ASGI transport, real upstream): where one request's time goes."""
    from sqlalchemy.event import listen

    from sovstack.app import create_app
    from sovstack.gateway import proxy, writer

    async def inline(func: Any, *args: Any) -> Any:
        return func(*args)

    # cProfile sees one thread: run the gateway's database work inline, on the event loop's thread.
    proxy.run_in_threadpool = writer.run_in_threadpool = inline  # type: ignore[assignment]
    app = create_app(Settings(home=settings.home, environment="test", secret_key=SECRET,
                              database_url=settings.database_url))

    async def drive() -> float:
        transport = httpx.ASGITransport(app=app)
        headers = {"authorization": f"Bearer {key}"}
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1", headers=headers) as client:
            for _ in range(50):
                (await client.post("/v1/chat/completions", json=BODY)).raise_for_status()
            statements: list[str] = []
            listen(app.state.db.engine, "before_cursor_execute",
                   lambda _c, _cur, sql, *_: statements.append(sql.split(None, 3)[0:3]))
            (await client.post("/v1/chat/completions", json=BODY)).raise_for_status()
            print("SQL of one request:", *(" ".join(words) for words in statements), sep="\n  ")
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            for _ in range(requests):
                (await client.post("/v1/chat/completions", json=BODY)).raise_for_status()
            profiler.disable()
            elapsed = time.perf_counter() - start
        out = Path(tempfile.gettempdir()) / "sovstack-gateway.prof"
        profiler.dump_stats(out)
        print(f"profile: {requests} requests in process, {elapsed / requests * 1000:.2f} ms each "
              f"(profiler on); stats in {out}", flush=True)
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(70)
        stats.sort_stats("tottime").print_stats(25)
        return elapsed

    asyncio.run(drive())
    app.state.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s loads: a smoke run.")
    parser.add_argument("--long", action="store_true", help=f"Then {LONG_REQUESTS:,} requests: is RSS flat?")
    parser.add_argument("--no-quotas", action="store_true", help="No key rate limit and no org budget.")
    parser.add_argument("--httpx-client", action="store_true",
                        help="Load with httpx on asyncio (as the figures before 2026-11-26 14:20 did).")
    parser.add_argument("--profile", action="store_true", help="cProfile the app in-process instead.")
    parser.add_argument("--responses", action="store_true",
                        help="Call the gateway's /v1/responses (translated to chat) instead of /v1/chat/completions.")
    parser.add_argument("--memory", action="store_true",
                        help=f"Only one worker's RSS after start-up and after {MEMORY_REQUESTS:,} requests.")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    print(f"sovstack gateway bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}{' (quick)' if args.quick else ''}")
    with tempfile.TemporaryDirectory(prefix="sovstack-bench-") as tmp:
        settings, db = fresh_deployment(Path(tmp) / "home")
        try:
            if args.memory:
                memory_run(settings, db)
                return
            run(settings, db, sizes, args)
        finally:
            db.dispose()


if __name__ == "__main__":
    main()
