"""Anthropic's Messages API ↔ OpenAI's chat completions, both directions.

Two uses, one vocabulary:

* inbound — ``POST /v1/messages``: a Claude client's request becomes an OpenAI chat request for the
  proxy (``chat_request``), and the proxy's answer or stream goes back as a Message
  (``message_from_chat``) or as Anthropic's SSE events (``MessageStream``);
* outbound — a deployment with ``backend: anthropic``: an OpenAI chat request becomes a Messages
  request (``messages_request``), and the upstream's Message or events become an OpenAI completion
  (``chat_from_message``) or OpenAI chunks (``ChunkStream``).

Everything here is dict work on parsed JSON; nothing touches the network or the database.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from sovstack.core.errors import BadInput

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often leave it out

# OpenAI finish_reason ↔ Anthropic stop_reason.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter", "pause_turn": "stop"}
# HTTP status → Anthropic error type (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


# Inbound: Messages → OpenAI chat ---------------------------------------------------------------------

def _text_of(content: Any, where: str) -> str:
    """A system prompt or tool result: a string, or a list of text blocks (other blocks are dropped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    if content is None:
        return ""
    raise BadInput(f"{where} must be a string or a list of content blocks", field=where)


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        raise BadInput("an image block's source must be of type base64 or url", field=f"{where}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {"id": block.get("id", ""), "type": "function",
            "function": {"name": block.get("name", ""), "arguments": orjson.dumps(block.get("input") or {}).decode()}}


def _chat_messages(message: Any, i: int) -> list[dict[str, Any]]:
    """One Anthropic message as one or more OpenAI messages (tool results become ``tool`` messages)."""
    where = f"messages.{i}"
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise BadInput("each message must be an object with role 'user' or 'assistant'", field=where)
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise BadInput("content must be a string or a list of content blocks", field=f"{where}.content")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image_part(block, f"{where}.content.{j}"))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_call(block))
        elif kind == "tool_result" and role == "user":
            text = _text_of(block.get("content"), f"{where}.content.{j}.content")
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""),
                            "content": f"Error: {text}" if block.get("is_error") else text})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # the model's own reasoning from an earlier turn: OpenAI has no place for it
        else:
            raise BadInput(f"unsupported content block type {kind!r} for role {role}", field=f"{where}.content.{j}")
    out = list(results)  # tool results answer the previous assistant turn: they come first
    if role == "assistant":
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        reply: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            reply["tool_calls"] = calls
        out.append(reply)
    elif parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "".join(p["text"] for p in parts) if only_text else parts})
    return out


def _chat_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadInput("tools must be a list", field="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise BadInput("each tool needs a name", field=f"tools.{i}")
        function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _chat_tool_choice(choice: dict[str, Any], body: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "tool":
        body["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
    elif kind in ("auto", "any", "none"):
        body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise BadInput("tool_choice.type must be auto, any, tool or none", field="tool_choice")
    if choice.get("disable_parallel_tool_use"):
        body["parallel_tool_calls"] = False


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages request as the OpenAI chat request the proxy sends on (``metadata``, ``top_k`` dropped)."""
    if not isinstance(body["messages"], list) or not body["messages"]:
        raise BadInput("messages must be a non-empty list", field="messages")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadInput("max_tokens must be a positive integer", field="max_tokens")
    messages: list[dict[str, Any]] = []
    system = _text_of(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body["messages"]):
        messages.extend(_chat_messages(message, i))
    chat: dict[str, Any] = {"model": body["model"], "messages": messages, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    if body.get("tools"):
        chat["tools"] = _chat_tools(body["tools"])
    if isinstance(body.get("tool_choice"), dict):
        _chat_tool_choice(body["tool_choice"], chat)
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    return chat


def estimate_tokens(chat: dict[str, Any]) -> int:
    """About four bytes of JSON per token: close enough to budget a prompt, and free."""
    size = len(orjson.dumps(chat.get("messages"))) + len(orjson.dumps(chat.get("tools") or []))
    return max(1, -(-size // 4))


def message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def tool_input(text: str) -> Any:
    """An OpenAI tool call's ``arguments`` (a JSON string) as the object other APIs send as the call's input."""
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": text}  # the model wrote broken JSON: keep what it said rather than lose it


def message_from_chat(data: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat completion as a Message."""
    choice = (data.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if reply.get("content"):
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                        "name": function.get("name", ""), "input": tool_input(function.get("arguments", ""))})
    usage = data.get("usage") or {}
    return {"id": message_id(), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": int(usage.get("prompt_tokens") or 0),
                      "output_tokens": int(usage.get("completion_tokens") or 0)}}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessageStream:
    """Turns the proxy's OpenAI SSE events into Anthropic's, one ``feed`` per relayed event."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.block = -1  # index of the open content block, -1 when none is open
        self.kind = ""  # "text" or "tool_use"
        self.tools: dict[int, int] = {}  # OpenAI tool_call index → content block index
        self.stop_reason = "end_turn"
        self.usage = {"input_tokens": 0, "output_tokens": 0}

    def start(self) -> bytes:
        return _event("message_start", {"type": "message_start", "message": {
            "id": message_id(), "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": dict(self.usage)}})

    def feed(self, event: bytes) -> bytes:
        out = bytearray()
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                out += self._data(line[5:].strip())
        return bytes(out)

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.block += 1
        self.kind = kind
        return out + _event("content_block_start", {"type": "content_block_start", "index": self.block,
                                                    "content_block": block})

    def _close(self) -> bytes:
        if not self.kind:
            return b""
        self.kind = ""
        return _event("content_block_stop", {"type": "content_block_stop", "index": self.block})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _data(self, payload: bytes) -> bytes:
        if payload == b"[DONE]":
            return self._end()
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if "error" in chunk:  # the proxy's own mid-stream failure event
            message = str((chunk["error"] or {}).get("message", "the upstream failed mid-stream"))
            return _event("error", error_body(500, message))
        usage = chunk.get("usage")
        if usage:
            self.usage = {"input_tokens": int(usage.get("prompt_tokens") or 0),
                          "output_tokens": int(usage.get("completion_tokens") or 0)}
        out = b""
        for choice in chunk.get("choices") or []:
            out += self._choice(choice)
        return out

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = b""
        delta = choice.get("delta") or {}
        if delta.get("content"):
            if self.kind != "text":
                out += self._open("text", {"type": "text", "text": ""})
            out += self._delta(self.block, {"type": "text_delta", "text": delta["content"]})
        for call in delta.get("tool_calls") or []:
            out += self._tool_delta(call)
        if choice.get("finish_reason"):
            self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def _tool_delta(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = int(call.get("index") or 0)
        function = call.get("function") or {}
        if index not in self.tools:
            out += self._open("tool_use", {"type": "tool_use", "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                                           "name": function.get("name", ""), "input": {}})
            self.tools[index] = self.block
        if function.get("arguments"):
            out += self._delta(self.tools[index], {"type": "input_json_delta", "partial_json": function["arguments"]})
        return out

    def _end(self) -> bytes:
        return self._close() + _event("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
            "usage": dict(self.usage)}) + _event("message_stop", {"type": "message_stop"})


# Outbound: OpenAI chat → Messages (a deployment with backend: anthropic) ------------------------------

def _anthropic_image(part: dict[str, Any]) -> dict[str, Any]:
    url = str((part.get("image_url") or {}).get("url", ""))
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _anthropic_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "text":
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            blocks.append(_anthropic_image(part))
    return blocks


def _anthropic_turn(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    role = message.get("role")
    if role == "tool":
        text = message.get("content")
        return "user", [{"type": "tool_result", "tool_use_id": str(message.get("tool_call_id", "")),
                         "content": text if isinstance(text, str) else _anthropic_blocks(text)}]
    blocks = _anthropic_blocks(message.get("content"))
    if role == "assistant":
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""),
                           "input": tool_input(function.get("arguments", ""))})
        return "assistant", blocks
    return "user", blocks


def _anthropic_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        picked: dict[str, Any] = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    elif choice in ("auto", "required", "none"):
        picked = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif parallel is False:
        picked = {"type": "auto"}
    else:
        return None
    if parallel is False and picked["type"] != "none":
        picked["disable_parallel_tool_use"] = True
    return picked


def messages_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat request as a Messages request for ``model`` (system turns joined; turns merged by role)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        if message.get("role") in ("system", "developer"):
            system.append("".join(b["text"] for b in _anthropic_blocks(message.get("content")) if b["type"] == "text"))
            continue
        role, blocks = _anthropic_turn(message)
        if turns and turns[-1]["role"] == role:  # the Messages API wants user and assistant to alternate
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    out: dict[str, Any] = {"model": model, "messages": turns,
                           "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens")
                           or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = "\n\n".join(system)
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)  # OpenAI's range is 0–2, Anthropic's 0–1
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = [{"name": f.get("name", ""), "description": f.get("description", ""),
                         "input_schema": f.get("parameters") or {"type": "object"}}
                        for f in ((t.get("function") or {}) for t in body["tools"] if isinstance(t, dict))]
    choice = _anthropic_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice and body.get("tools"):
        out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if body.get("stream"):
        out["stream"] = True
    return out


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    # Cached input is still input the caller sent; it is counted (and priced) as input here.
    prompt = sum(int(usage.get(k) or 0) for k in ("input_tokens", "cache_read_input_tokens",
                                                   "cache_creation_input_tokens"))
    completion = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_from_message(data: dict[str, Any]) -> dict[str, Any]:
    """A Message as an OpenAI chat completion."""
    text, calls = [], []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(_tool_call(block))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {"id": "chatcmpl-" + str(data.get("id", "")), "object": "chat.completion", "created": int(time.time()),
            "model": data.get("model", ""),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": FINISH_REASONS.get(data.get("stop_reason") or "end_turn", "stop")}],
            "usage": _usage(data.get("usage") or {})}


def openai_error(content: bytes, status: int) -> bytes:
    """An Anthropic error answer in OpenAI's error shape (what the chat clients of the gateway expect)."""
    try:
        error = (orjson.loads(content) or {}).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    return orjson.dumps({"error": {"message": message or f"the upstream answered HTTP {status}",
                                   "type": "invalid_request_error", "param": None,
                                   "code": (error.get("type") if isinstance(error, dict) else None) or "upstream"}})


class ChunkStream:
    """Turns an Anthropic event stream into OpenAI chunk lines, ending with a usage chunk and ``[DONE]``."""

    def __init__(self) -> None:
        self.base: dict[str, Any] = {"id": "chatcmpl-", "object": "chat.completion.chunk",
                                     "created": int(time.time()), "model": ""}
        self.tools: dict[int, int] = {}  # content block index → OpenAI tool_call index
        self.usage: dict[str, Any] = {}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> str:
        return "data: " + orjson.dumps({**self.base, "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish}]}).decode()

    def feed(self, line: str) -> list[str]:
        """OpenAI SSE lines for one line of the Anthropic stream (``event:`` lines and pings give none)."""
        if not line.startswith("data:"):
            return []
        event = orjson.loads(line[5:].strip())  # garbage raises JSONDecodeError: the caller treats it as a failure
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            message = event.get("message") or {}
            self.base["id"] = "chatcmpl-" + str(message.get("id", ""))
            self.base["model"] = message.get("model", "")
            self.usage = dict(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""}), ""]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            reason = (event.get("delta") or {}).get("stop_reason") or "end_turn"
            return [self._chunk({}, FINISH_REASONS.get(reason, "stop")), ""]
        if kind == "message_stop":
            usage = "data: " + orjson.dumps({**self.base, "choices": [], "usage": _usage(self.usage)}).decode()
            return [usage, "", "data: [DONE]", ""]
        if kind == "error":
            raise StreamError(str((event.get("error") or {}).get("message", "error event")))
        return []  # ping, and event types added later

    def _block_start(self, event: dict[str, Any]) -> list[str]:
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = self.tools[int(event.get("index") or 0)] = len(self.tools)
            return [self._chunk({"tool_calls": [{"index": index, "id": block.get("id", ""), "type": "function",
                                                 "function": {"name": block.get("name", ""), "arguments": ""}}]}),
                    ""]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]}), ""]
        return []

    def _block_delta(self, event: dict[str, Any]) -> list[str]:
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            return [self._chunk({"content": delta.get("text", "")}), ""]
        if delta.get("type") == "input_json_delta":
            index = self.tools.get(int(event.get("index") or 0), 0)
            return [self._chunk({"tool_calls": [{"index": index,
                                                 "function": {"arguments": delta.get("partial_json", "")}}]}), ""]
        return []  # thinking and signature deltas have no OpenAI counterpart


class StreamError(Exception):
    """The Anthropic upstream sent an ``error`` event mid-stream."""
