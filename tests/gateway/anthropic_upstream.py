"""A small Anthropic Messages API upstream for tests: answers and streams in the API's documented shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# ok; HTTP failures; "error_event": an overloaded error event mid-stream; "drop": the stream is cut.
MODES = ("ok", "500", "529", "429", "400", "401", "error_event", "drop", "garbage")
ERROR_TYPES = {"400": "invalid_request_error", "401": "authentication_error", "429": "rate_limit_error",
               "500": "api_error", "529": "overloaded_error"}


@dataclass
class AnthropicUpstream:
    """Answers ``POST /v1/messages`` like Anthropic's API, or fails the way ``mode`` says."""

    name: str
    mode: str = "ok"
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    server: uvicorn.Server | None = None

    def wants_tool(self, body: dict[str, Any]) -> bool:
        """Call the first tool, unless the last turn already answers a tool call."""
        last = body["messages"][-1]["content"]
        answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        return bool(body.get("tools")) and not answered

    def content(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if self.wants_tool(body):
            return [{"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_01", "name": body["tools"][0]["name"],
                     "input": {"city": "Pune"}}]
        return [{"type": "text", "text": f"hello from {self.name}"}]

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": "msg_01up", "type": "message", "role": "assistant", "model": body["model"],
                "content": self.content(body), "stop_reason": "tool_use" if self.wants_tool(body) else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 21, "output_tokens": 9, "cache_read_input_tokens": 4}}

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.received.append(body)
        self.headers.append(dict(request.headers))
        if self.mode in ERROR_TYPES:
            return JSONResponse({"type": "error", "error": {"type": ERROR_TYPES[self.mode],
                                                            "message": f"injected {self.mode}"}},
                                status_code=int(self.mode))
        if self.mode == "garbage":
            return Response(b"<html>not json", media_type="application/json")
        if body.get("stream"):
            return StreamingResponse(self.stream(body), media_type="text/event-stream")
        return JSONResponse(self.message(body))

    def events(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        start = {**self.message(body), "content": [], "stop_reason": None,
                 "usage": {"input_tokens": 25, "output_tokens": 1}}
        out: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start}),
                                                 ("ping", {"type": "ping"})]
        out += [("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})]
        out += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": f"part{i} "}}) for i in range(3)]
        out += [("content_block_stop", {"type": "content_block_stop", "index": 0})]
        if self.wants_tool(body):
            out += [("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_01", "name": body["tools"][0]["name"], "input": {}}}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                             "delta": {"type": "input_json_delta", "partial_json": '{"city": '}}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                             "delta": {"type": "input_json_delta", "partial_json": '"Pune"}'}}),
                    ("content_block_stop", {"type": "content_block_stop", "index": 1})]
        reason = "tool_use" if self.wants_tool(body) else "end_turn"
        out += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                                   "usage": {"output_tokens": 15}}),
                ("message_stop", {"type": "message_stop"})]
        return out

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        for i, (name, data) in enumerate(self.events(body)):
            if i == 4 and self.mode == "error_event":
                name, data = "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            if i == 4 and self.mode == "drop":
                raise RuntimeError("injected: connection dropped mid-stream")
            yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])
