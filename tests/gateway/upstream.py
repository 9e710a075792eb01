"""A small OpenAI-compatible upstream for tests, able to inject faults (mocks only at the world's edge)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODES = ("ok", "500", "429", "400", "400html", "401", "403", "404", "stall", "garbage", "drop", "endless", "slow",
         "nospace", "cr", "nousage", "flaky", "hold")
SECRET_DETAIL = "internal-trace-7f3a"  # what a 400 answer carries beyond the error's message: never relayed


@dataclass
class Upstream:
    """Answers like an OpenAI-compatible server, or fails the way ``mode`` says."""

    name: str
    mode: str = "ok"
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    server: uvicorn.Server | None = None
    failures_left: int = 2  # mode "flaky": this many 503s, then answers
    without: tuple[str, ...] = ()  # paths it does not serve (a chat-only server has no /v1/rerank)
    gate: threading.Event = field(default_factory=threading.Event)  # "hold": answer only once it is set

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": f"hello from {self.name}"}}],
                  "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
        if self.mode == "nousage":
            del answer["usage"]
        return answer

    def text_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": "cmpl-1", "object": "text_completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "text": f" continued by {self.name}", "finish_reason": "stop",
                             "logprobs": None}],
                "usage": {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10}}

    def chunks(self, body: dict[str, Any], n: int = 3) -> list[dict[str, Any]]:
        if "prompt" in body:  # a legacy completion streams text, not deltas
            base = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": body["model"]}
            out = [{**base, "choices": [{"index": 0, "text": f"part{i} ", "finish_reason": None}]} for i in range(n)]
            out.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
        else:
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
            out = [{**base, "choices": [{"index": 0, "delta": {"content": f"part{i} "}, "finish_reason": None}]}
                   for i in range(n)]
            out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage") and self.mode != "nousage":
            out.append({**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n,
                                                          "total_tokens": 5 + n}})
        return out

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.received.append(body)
        self.headers.append(dict(request.headers))
        if self.mode == "400html":
            return Response(b"<html>bad request</html>", status_code=400, media_type="text/html")
        if self.mode == "flaky" and self.failures_left > 0:
            self.failures_left -= 1
            return JSONResponse({"error": {"message": "injected 503"}}, status_code=503)
        if self.mode in ("401", "403", "404"):
            # Like some servers do: the key it was given is echoed back in the error message.
            key = request.headers.get("authorization", "")
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {key}", "type": "auth",
                                           "code": "invalid_api_key"}}, status_code=int(self.mode))
        if self.mode == "400":
            return JSONResponse({"error": {"message": "injected 400: max_tokens is too large", "param": "max_tokens",
                                           "type": "invalid_request_error", "code": None},
                                 "debug": {"trace": SECRET_DETAIL,
                                           "upstream_key": request.headers.get("authorization")}},
                                status_code=400)
        if self.mode in ("500", "429"):
            return JSONResponse({"error": {"message": f"injected {self.mode}"}}, status_code=int(self.mode))
        if self.mode == "stall":
            await asyncio.sleep(30)
        while self.mode == "hold" and not self.gate.is_set():
            await asyncio.sleep(0.01)
        if self.mode == "garbage":
            return Response(b"<html>not json", media_type="application/json")
        if body.get("stream"):
            return StreamingResponse(self.stream(body), media_type="text/event-stream")
        return JSONResponse(self.text_completion(body) if "prompt" in body else self.completion(body))

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        if self.mode == "endless":
            while True:
                yield b'data: {"choices": [{"index": 0, "delta": {"content": "."}}]}\n\n'
                await asyncio.sleep(0.01)
        for i, chunk in enumerate(self.chunks(body)):
            if self.mode == "drop" and i == 2:
                raise RuntimeError("injected: connection dropped mid-stream")
            if self.mode == "slow":
                await asyncio.sleep(0.05)
            text = json.dumps(chunk)
            if self.mode == "nospace":  # "data:{…}": the SSE specification allows it, some servers do it
                yield b"data:" + text.encode() + b"\n\n"
            elif self.mode == "cr":  # lone-CR line ends, a comment, one event's data split over two lines
                first, rest = text.split(", ", 1)
                yield b": keep-alive\r\r" + f"data:{first},\rdata: {rest}\r\r".encode()
            else:
                yield b"data: " + text.encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.received.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return JSONResponse({"object": "list", "model": body["model"],
                             "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                                      for i in range(len(inputs))],
                             "usage": {"prompt_tokens": 4 * len(inputs), "total_tokens": 4 * len(inputs)}})

    async def moderations(self, request: Request) -> Response:
        body = await request.json()
        self.received.append(body)
        flagged = "hate" in str(body["input"])
        return JSONResponse({"id": "modr-1", "model": body["model"], "results": [
            {"flagged": flagged, "categories": {"hate": flagged},
             "category_scores": {"hate": 0.9 if flagged else 0.01}}]})

    async def rerank(self, request: Request) -> Response:
        body = await request.json()
        self.received.append(body)
        scores = [(i, sum(w in d for w in body["query"].split()) / 10) for i, d in enumerate(body["documents"])]
        scores.sort(key=lambda p: -p[1])
        return JSONResponse({"id": "rerank-1", "model": body["model"],
                             "results": [{"index": i, "relevance_score": s} for i, s in scores[:body.get("top_n")]],
                             "usage": {"total_tokens": 20}})

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model"}]})

    def app(self) -> Starlette:
        # A legacy completion is served by the same handler: the body ("prompt") says which it is.
        return Starlette(routes=[route for route in [Route("/v1/chat/completions", self.chat, methods=["POST"]),
                                 Route("/v1/completions", self.chat, methods=["POST"]),
                                 Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                                 Route("/v1/moderations", self.moderations, methods=["POST"]),
                                 Route("/v1/rerank", self.rerank, methods=["POST"]),
                                 Route("/v1/models", self.models)] if route.path not in self.without])


def serve(app: Any, port: int) -> uvicorn.Server:
    """Run an ASGI app on 127.0.0.1:port in a thread until ``server.should_exit`` is set."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return server
