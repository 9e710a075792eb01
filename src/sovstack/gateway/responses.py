"""OpenAI's Responses API (``POST /v1/responses``) over upstreams that speak only chat completions.

A request is translated to a chat completion body once, before admission, so the proxy's whole path
(authentication, classification, quotas, policy routing, failover, metering, audit) applies to it
unchanged. The chat answer is translated back: a whole completion into one Response object, a
stream of chunks into the Responses stream events (``response.created`` … ``response.completed``).

Responses are kept only for organisations that opted in (gateway/stored.py): then an answer is kept
unless the request says ``"store": false``, and ``previous_response_id`` continues a kept one, its
earlier input and output items going before this request's input (its instructions are not carried
over). Elsewhere ``store`` is accepted and nothing is kept, and ``previous_response_id`` is a 400. Every
answer's ``store`` says whether it was kept. ``conversation``, stored prompts, ``background`` and
``item_reference`` inputs need more than the gateway keeps and are refused with a 400; a client may
always carry its conversation forward by sending earlier output items back as input instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from fastapi.responses import Response, StreamingResponse

from sovstack.core.errors import BadInput

# Fields that need more kept on the server than the gateway keeps.
STORED = {
    "conversation": "this gateway does not store conversations: send the earlier turns in input, or continue "
                    "a kept response with previous_response_id",
    "prompt": "this gateway does not store prompt templates: send the instructions and input themselves",
}
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(24).hex()


Keep = Callable[[dict[str, Any]], Awaitable[bool]]  # keeps a finished Response object; False: it was not kept


@dataclass
class Reply:
    """What an answer says of itself beyond the request's echo: its id, and how it is kept (None: it is not).

    ``keep`` is awaited with the finished Response object before the client is given it, so a client
    may continue it as soon as it has it.
    """

    id: str = field(default_factory=lambda: _new_id("resp_"))
    keep: Keep | None = None


# Request: Responses → chat completions -----------------------------------------------------------------

def chat_body(body: dict[str, Any], earlier: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The chat completion request that asks for what ``body`` (a Responses request) asks for, after the
    ``earlier`` items of the response it continues."""
    for name, why in STORED.items():
        if body.get(name) is not None:
            raise BadInput(why, field=name)
    if body.get("background"):
        raise BadInput("background responses need the server to run them on its own; this gateway does not",
                       field="background")
    if body.get("store") is not None and not isinstance(body["store"], bool):
        raise BadInput("store must be true or false", field="store")
    chat: dict[str, Any] = {"model": body["model"], "messages": _messages(body, earlier)}
    if body.get("stream") is not None:
        if not isinstance(body["stream"], bool):
            raise BadInput("stream must be true or false", field="stream")
        if body["stream"]:
            # The usage chunk is what response.completed reports (and what the proxy meters).
            chat["stream"], chat["stream_options"] = True, {"include_usage": True}
    _copy_sampling(body, chat)
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = bool(body["parallel_tool_calls"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def _copy_sampling(body: dict[str, Any], chat: dict[str, Any]) -> None:
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadInput("max_output_tokens must be a positive integer", field="max_output_tokens")
        chat["max_tokens"] = limit  # the older name: every chat server knows it
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise BadInput(f"{name} must be a number", field=name)
            chat[name] = value
    if isinstance(body.get("user"), str):
        chat["user"] = body["user"]
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    if effort:
        chat["reasoning_effort"] = effort


def _messages(body: dict[str, Any], earlier: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadInput("instructions must be a string", field="instructions")
        messages.append({"role": "system", "content": instructions})
    for i, item in enumerate(earlier):
        _add_item(messages, item, f"previous_response_id[{i}]")
    given = body["input"]
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
        return messages
    if not isinstance(given, list) or not given:
        raise BadInput("input must be a string or a non-empty list of input items", field="input")
    for i, item in enumerate(given):
        _add_item(messages, item, f"input[{i}]")
    return messages


def _add_item(messages: list[dict[str, Any]], item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise BadInput("an input item must be an object", field=where)
    kind = item.get("type", "message")
    if kind == "message":
        role = ROLES.get(str(item.get("role")))
        if role is None:
            raise BadInput(f"role must be one of {', '.join(ROLES)}", field=f"{where}.role")
        messages.append({"role": role, "content": _content(item.get("content"), f"{where}.content")})
    elif kind == "function_call":
        call = {"id": _text_field(item, "call_id", where), "type": "function",
                "function": {"name": _text_field(item, "name", where), "arguments": item.get("arguments") or ""}}
        last = messages[-1] if messages else None
        # Output order is [message, function_call, function_call…]: one assistant turn in chat terms.
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        messages.append({"role": "tool", "tool_call_id": _text_field(item, "call_id", where),
                         "content": _tool_output(item.get("output"), f"{where}.output")})
    elif kind == "item_reference":
        raise BadInput("this gateway does not store items: send the item itself", field=f"{where}.type")
    else:
        raise BadInput(f"input items of type {kind!r} are not supported; use message, function_call or "
                       "function_call_output", field=f"{where}.type")


ITEM_IDS = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """This request's input as a kept response lists it: items each with an id, a type and a status, a
    string input as one user message (call after ``chat_body``, which checked them)."""
    given = body["input"]
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given
    return [_input_item(item) for item in items]


def _input_item(item: dict[str, Any]) -> dict[str, Any]:
    kind = item.get("type", "message")
    kept = {**item, "type": kind, "status": item.get("status") or "completed"}
    if not isinstance(item.get("id"), str) or not item["id"]:
        kept["id"] = _new_id(ITEM_IDS[kind])
    if kind == "message" and isinstance(item.get("content"), str):
        part = "output_text" if item.get("role") == "assistant" else "input_text"
        kept["content"] = [{"type": part, "text": item["content"]}]
    return kept


def _text_field(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise BadInput(f"{name} must be a non-empty string", field=f"{where}.{name}")
    return value


def _content(content: Any, where: str) -> Any:
    """A message's content as chat takes it: a string when it is all text, else a list of chat parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadInput("content must be a string or a list of content parts", field=where)
    parts = [_part(part, f"{where}[{i}]") for i, part in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)  # some chat servers take only strings for system/assistant
    return parts


def _part(part: Any, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise BadInput("a content part must be an object", field=where)
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        if not isinstance(part.get("text"), str):
            raise BadInput("text must be a string", field=f"{where}.text")
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            raise BadInput("give the image as image_url (a URL or a data: URL); this gateway stores no files",
                           field=f"{where}.image_url")
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": part.get("detail") or "auto"}}
    if kind == "input_file":
        if not isinstance(part.get("file_data"), str):
            raise BadInput("give the file as file_data; this gateway stores no files and fetches no URLs",
                           field=f"{where}.file_data")
        return {"type": "file", "file": {"file_data": part["file_data"], "filename": part.get("filename") or "file"}}
    raise BadInput(f"content parts of type {kind!r} are not supported", field=f"{where}.type")


def _tool_output(output: Any, where: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = [_part(p, f"{where}[{i}]") for i, p in enumerate(output)]
        if all(p["type"] == "text" for p in parts):
            return "\n".join(p["text"] for p in parts)
        raise BadInput("a function call's output may hold only text for a chat upstream", field=where)
    raise BadInput("output must be a string or a list of text parts", field=where)


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadInput("tools must be a list", field="tools")
    chat = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise BadInput(f"only function tools are supported (not {kind!r}): the upstreams run no hosted tools",
                           field=f"tools[{i}].type")
        function = {"name": _text_field(tool, "name", f"tools[{i}]")}
        for name in ("description", "parameters", "strict"):
            if tool.get(name) is not None:
                function[name] = tool[name]
        chat.append({"type": "function", "function": function})
    return chat


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadInput("tool_choice must be auto, none, required or {\"type\": \"function\", \"name\": …}",
                   field="tool_choice")


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise BadInput("text.format.type must be text, json_object or json_schema", field="text.format.type")


# Answer: chat completion → Response ---------------------------------------------------------------------

def _skeleton(body: dict[str, Any], reply: Reply, status: str, created: int) -> dict[str, Any]:
    """The Response object's fields that echo the request."""
    return {"id": reply.id, "object": "response", "created_at": created, "status": status,
            "model": body["model"], "output": [], "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {}, "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": body.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
            "store": reply.keep is not None,
            "temperature": body.get("temperature"), "top_p": body.get("top_p"),
            "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [], "truncation": "disabled", "usage": None, "user": body.get("user")}


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {"input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(usage.get("total_tokens") or tokens_in + tokens_out)}


def _finish(response: dict[str, Any], finish_reason: str | None) -> None:
    reason = INCOMPLETE.get(finish_reason or "")
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": _new_id("msg_"), "type": "message", "role": "assistant", "status": status, "content": parts}


def _call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": _new_id("fc_"), "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def response_from_chat(body: dict[str, Any], chat: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The Response object for a whole chat completion."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    response = _skeleton(body, reply, "completed", int(chat.get("created") or time.time()))
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    parts = [_text_part(content)] if content else []
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        response["output"].append(_message_item(parts, "completed"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        response["output"].append(_call_item(str(call.get("id") or _new_id("call_")), str(function.get("name") or ""),
                                             str(function.get("arguments") or ""), "completed"))
    _finish(response, choice.get("finish_reason"))
    response["usage"] = _usage(chat.get("usage"))
    return response


async def answer(resp: Response, body: dict[str, Any], reply: Reply) -> Response:
    """The proxy's chat answer as a Response object, kept first if it is to be; an upstream's error answer is
    passed on as it is (and not kept)."""
    if resp.status_code != 200:
        return resp
    chat = orjson.loads(bytes(resp.body))
    headers = {k: v for k, v in resp.headers.items() if k.startswith("x-sovstack-")}
    response = response_from_chat(body, chat, reply)
    if reply.keep is not None:
        response["store"] = await reply.keep(response)
    return Response(orjson.dumps(response), media_type="application/json", headers=headers)


# Streams: chat chunks → Responses events -----------------------------------------------------------------

def stream(resp: Response, body: dict[str, Any], reply: Reply) -> Response:
    """The proxy's relayed chat stream as a stream of Responses events (the headers stay)."""
    if not isinstance(resp, StreamingResponse):
        return resp
    resp.body_iterator = _translate(resp.body_iterator, StreamTranslator(body, reply), reply.keep)
    return resp


async def _translate(body: AsyncIterable[str | bytes | memoryview], translator: StreamTranslator,
                     keep: Keep | None) -> AsyncIterator[bytes]:
    relay, pending = aiter(body), b""
    try:
        yield translator.start()
        async for piece in relay:
            pending += piece.encode() if isinstance(piece, str) else bytes(piece)
            *events, pending = pending.split(b"\n\n")
            for event in events:
                out = translator.event(event)
                if translator.ended and keep is not None and translator.response["store"]:
                    await keep(translator.response)  # kept before the client learns it is complete
                if out:
                    yield out
                if translator.ended:
                    return
        if not translator.ended:
            yield translator.failed("the upstream stream ended before its answer was complete")
    finally:
        # Closed now, not when collected: the relay meters a client that hung up in its own clean-up.
        close = getattr(relay, "aclose", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await close()


class StreamTranslator:
    """Turns one chat completion stream into Responses events, each with its ``sequence_number``."""

    def __init__(self, body: dict[str, Any], reply: Reply) -> None:
        self.response = _skeleton(body, reply, "in_progress", int(time.time()))
        self.sequence = 0
        self.items: list[dict[str, Any]] = []  # output items, in output_index order
        self.message: dict[str, Any] | None = None  # the message item text is going to, while open
        self.message_index = 0
        self.delta_head = b""
        self.text: list[str] = []
        self.calls: dict[int, tuple[int, dict[str, Any]]] = {}  # chat tool-call index -> (output_index, item)
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.ended = False

    def _emit(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload["type"], payload["sequence_number"] = kind, self.sequence
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def start(self) -> bytes:
        return (self._emit("response.created", {"response": self.response})
                + self._emit("response.in_progress", {"response": self.response}))

    def event(self, raw: bytes) -> bytes:
        """The Responses events for one server-sent event of the relayed chat stream."""
        if raw.startswith(b"data: ") and b"\n" not in raw:
            data = raw[6:]  # the relay's usual event: one data line
        else:
            data = b"\n".join(line[5:].lstrip(b" ") for line in raw.split(b"\n") if line.startswith(b"data:"))
        if not data:
            return b""
        if data == b"[DONE]":
            return self.completed()
        chunk = orjson.loads(data)
        if not isinstance(chunk, dict):
            return b""
        if chunk.get("error"):
            error = chunk["error"]
            return self.failed(str(error.get("message") if isinstance(error, dict) else error))
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        out = b""
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text(str(delta["content"]))
            for i, call in enumerate(delta.get("tool_calls") or []):
                out += self._call(call, i)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def _open(self, item: dict[str, Any]) -> bytes:
        self.items.append(item)
        return self._emit("response.output_item.added", {"output_index": len(self.items) - 1, "item": item})

    def _text(self, delta: str) -> bytes:
        out = b""
        if self.message is None:
            self.message, self.message_index = _message_item([], "in_progress"), len(self.items)
            out += self._open(self.message)
            out += self._emit("response.content_part.added", {"item_id": self.message["id"],
                                                              "output_index": self.message_index,
                                                              "content_index": 0, "part": _text_part("")})
            # The one event sent per chunk, so built from bytes prepared once per message item.
            self.delta_head = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",' \
                + b'"item_id":"' + self.message["id"].encode() + b'","output_index":' \
                + str(self.message_index).encode() + b',"content_index":0,"logprobs":[],"sequence_number":'
        self.text.append(delta)
        self.sequence += 1
        return out + self.delta_head + str(self.sequence - 1).encode() + b',"delta":' + orjson.dumps(delta) + b"}\n\n"

    def _call(self, call: dict[str, Any], position: int) -> bytes:
        index = call.get("index", position)
        function = call.get("function") or {}
        known, out = self.calls.get(index), b""
        if known is None:
            out += self._close_message()  # text after a tool call starts a new message item
            item = _call_item(str(call.get("id") or _new_id("call_")), str(function.get("name") or ""), "",
                              "in_progress")
            known = self.calls[index] = (len(self.items), item)
            out += self._open(item)
        position, item = known
        if function.get("name") and not item["name"]:
            item["name"] = str(function["name"])
        arguments = function.get("arguments")
        if arguments:
            item["arguments"] += arguments
            out += self._emit("response.function_call_arguments.delta", {
                "item_id": item["id"], "output_index": position, "delta": arguments})
        return out

    def _close_message(self) -> bytes:
        message = self.message
        if message is None:
            return b""
        self.message = None
        index, text = self.message_index, "".join(self.text)
        self.text = []
        part = _text_part(text)
        message["content"], message["status"] = [part], "completed"
        return (self._emit("response.output_text.done", {"item_id": message["id"], "output_index": index,
                                                         "content_index": 0, "text": text, "logprobs": []})
                + self._emit("response.content_part.done", {"item_id": message["id"], "output_index": index,
                                                            "content_index": 0, "part": part})
                + self._emit("response.output_item.done", {"output_index": index, "item": message}))

    def _close_calls(self) -> bytes:
        out = b""
        for index, item in self.calls.values():
            item["status"] = "completed"
            out += self._emit("response.function_call_arguments.done", {
                "item_id": item["id"], "output_index": index, "name": item["name"], "arguments": item["arguments"]})
            out += self._emit("response.output_item.done", {"output_index": index, "item": item})
        self.calls = {}
        return out

    def completed(self) -> bytes:
        out = self._close_message() + self._close_calls()
        response = self.response
        response["output"], response["usage"] = self.items, _usage(self.usage)
        _finish(response, self.finish_reason)
        self.ended = True
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return out + self._emit(kind, {"response": response})

    def failed(self, message: str) -> bytes:
        """An ``error`` event and ``response.failed``: the answer stopped half-way and will not be finished."""
        response = self.response
        for item in self.items:
            if item["status"] == "in_progress":
                item["status"] = "incomplete"
        if self.message is not None:
            self.message["content"] = [_text_part("".join(self.text))]
        response["status"], response["output"] = "failed", self.items
        response["store"] = False  # an answer that stopped half-way is not kept
        response["error"] = {"code": "server_error", "message": message}
        response["usage"] = _usage(self.usage)
        self.ended = True
        return (self._emit("error", {"code": "stream_interrupted", "message": message, "param": None})
                + self._emit("response.failed", {"response": response}))
