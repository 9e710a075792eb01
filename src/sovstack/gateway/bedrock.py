"""Amazon Bedrock's Converse API ↔ OpenAI's chat completions, for deployments with ``backend: bedrock``.

An OpenAI chat request becomes a Converse request (``converse_request``), signed with AWS Signature
Version 4 (``signed_headers``) by the deployment's credentials (``signing``: its ``api_key`` is
``[REGION/]ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]``, the region otherwise read from the
``bedrock-runtime.REGION.amazonaws.com`` host). The answer becomes a chat completion
(``chat_from_converse``); ConverseStream's binary event stream becomes OpenAI chunk events
(``ChunkStream``); an error answer becomes OpenAI's error shape (``openai_error``).

botocore signs and reads the event stream. It is imported on first use only: a gateway process with no
Bedrock deployment never loads it (some 13 MiB and a tenth of a second per worker).
"""

from __future__ import annotations

import re
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson

from sovstack.core.errors import BadInput
from sovstack.gateway.anthropic import tool_input

if TYPE_CHECKING:
    from botocore.eventstream import EventStreamMessage

SIGNING_NAME = "bedrock"  # bedrock-runtime's SigV4 service name
FORMAT = "[REGION/]ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]"
# Public, FIPS and VPC-endpoint hosts name their region: bedrock-runtime[-fips].REGION[.vpce].amazonaws.com[.cn]
REGION_HOST = re.compile(r"(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$")
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
SECRET = re.compile(r"^[A-Za-z0-9/+=]+$")
MAX_TEMPERATURE = 1.0  # OpenAI's range is 0–2; most models on Bedrock take 0–1
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "content_filtered": "content_filter", "guardrail_intervened": "content_filter",
                  "model_context_window_exceeded": "length"}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
# Bedrock answers 400 ValidationException, like a caller's mistake, when the model id itself is wrong.
CONFIGURATION_ERRORS = ("model identifier is invalid", "with on-demand throughput")


@dataclass(frozen=True)
class Signing:
    """What a deployment signs its calls with."""

    access_key: str
    secret_key: str
    token: str | None
    region: str

    def __repr__(self) -> str:  # never the secret, in a traceback or a log line
        return f"Signing(access_key={self.access_key!r}, region={self.region!r})"


def signing(api_key: str, base_url: str) -> Signing:
    """The deployment's credentials and region, or ValueError saying what is wrong (never quoting the key)."""
    head, colon, rest = api_key.partition(":")
    stated, _, access_key = head.rpartition("/")
    secret, _, token = rest.partition(":")
    if not colon or not ACCESS_KEY_ID.match(access_key) or not SECRET.match(secret) or (
            token and not SECRET.match(token)):
        raise ValueError(f"api_key of a bedrock deployment must be AWS credentials, {FORMAT}")
    if stated and not REGION.match(stated):
        raise ValueError(f"api_key: what comes before '/' must be an AWS region such as eu-central-1 ({FORMAT})")
    found = REGION_HOST.search(urlsplit(base_url).hostname or "")
    named = found.group(1) if found else ""
    if stated and named and stated != named:
        raise ValueError(f"api_key names the region {stated} but base_url is in {named}")
    if not stated and not named:
        raise ValueError(f"api_key must state the AWS region ({FORMAT}): the base_url's host does not name one "
                         "(bedrock-runtime.REGION.amazonaws.com)")
    return Signing(access_key, secret, token or None, stated or named)


def url(base_url: str, model_id: str, stream: bool) -> str:
    """Converse's URL for a model id or inference profile (``:`` and ``/`` in it are percent-encoded)."""
    return f"{base_url.rstrip('/')}/model/{quote(model_id, safe='')}/{'converse-stream' if stream else 'converse'}"


def signed_headers(api_key: str, base_url: str, target: str, payload: bytes) -> dict[str, str]:
    """The headers of a POST of ``payload`` to ``target``, signed with SigV4 for the deployment's region."""
    from botocore.auth import SigV4Auth  # on first use only: see the module's docstring
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    keys = signing(api_key, base_url)
    request = AWSRequest(method="POST", url=target, data=payload, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(keys.access_key, keys.secret_key, keys.token), SIGNING_NAME, keys.region).add_auth(request)
    return dict(request.headers.items())


# OpenAI chat → Converse ----------------------------------------------------------------------------------

def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    """Converse takes an image's bytes (base64 in JSON), or an S3 location; never a URL to fetch."""
    link = str((part.get("image_url") or {}).get("url", ""))
    media_type, base64, data = link.removeprefix("data:").partition(";base64,")
    image_format = IMAGE_FORMATS.get(media_type.lower())
    if not link.startswith("data:") or not base64 or image_format is None:
        raise BadInput("a bedrock deployment takes images only as base64 data: URLs (PNG, JPEG, GIF or WebP)",
                       field=where)
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []  # Converse refuses blank text blocks
    blocks = []
    for j, part in enumerate(content if isinstance(content, list) else []):
        if isinstance(part, dict) and part.get("type") == "text" and part.get("text"):
            blocks.append({"text": str(part["text"])})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            blocks.append(_image(part, f"{where}.{j}"))
    return blocks


def _turn(message: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    role = message.get("role")
    if role == "tool":
        return "user", [{"toolResult": {"toolUseId": str(message.get("tool_call_id", "")),
                                        "content": _blocks(message.get("content"), where)}}]
    blocks = _blocks(message.get("content"), where)
    if role == "assistant":
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            blocks.append({"toolUse": {"toolUseId": call.get("id", ""), "name": function.get("name", ""),
                                       "input": tool_input(function.get("arguments", ""))}})
        return "assistant", blocks
    return "user", blocks


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = min(float(body["temperature"]), MAX_TEMPERATURE)
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _tool_config(body: dict[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    functions = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    used = any("toolUse" in b or "toolResult" in b for turn in turns for b in turn["content"])
    # Converse has no "none": the tools are left out, unless earlier turns used them (then Converse needs them).
    if not functions or (choice == "none" and not used):
        return None
    tools = []
    for function in functions:
        spec = {"name": function.get("name", ""), "inputSchema": {"json": function.get("parameters")
                                                                   or {"type": "object"}}}
        if function.get("description"):
            spec["description"] = function["description"]
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name", "")}}
    elif choice in ("auto", "required"):
        config["toolChoice"] = {"auto": {}} if choice == "auto" else {"any": {}}
    return config


def converse_request(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request as a Converse request (system turns apart, turns of one role merged)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        where = f"messages.{i}.content"
        if message.get("role") in ("system", "developer"):
            system.extend(b for b in _blocks(message.get("content"), where) if "text" in b)
            continue
        role, blocks = _turn(message, where)
        if turns and turns[-1]["role"] == role:  # Converse wants user and assistant to alternate
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system
    config = _inference_config(body)
    if config:
        out["inferenceConfig"] = config
    tools = _tool_config(body, turns)
    if tools:
        out["toolConfig"] = tools
    return out


# Converse → OpenAI chat --------------------------------------------------------------------------------

def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(str(stop_reason or "end_turn"), "stop")


def usage(counts: dict[str, Any]) -> dict[str, int]:
    # Cached input is still input the caller sent; it is counted (and priced) as input here.
    prompt = sum(int(counts.get(k) or 0) for k in ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"))
    completion = int(counts.get("outputTokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]  # Converse answers carry no id


def chat_from_converse(data: dict[str, Any]) -> dict[str, Any]:
    """A Converse answer as an OpenAI chat completion (reasoning blocks have no place in it and are dropped)."""
    text, calls = [], []
    for block in ((data.get("output") or {}).get("message") or {}).get("content") or []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            text.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append({"id": str(use.get("toolUseId", "")), "type": "function", "function": {
                "name": str(use.get("name", "")), "arguments": orjson.dumps(use.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {"id": _completion_id(), "object": "chat.completion", "created": int(time.time()), "model": "",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(data.get("stopReason"))}],
            "usage": usage(data.get("usage") or {})}


def openai_error(content: bytes, status: int, headers: Mapping[str, str]) -> tuple[int, bytes]:
    """Bedrock's error answer in OpenAI's shape, the error type (``x-amzn-ErrorType``) as its code; and the
    status to judge it by: a wrong model id is the deployment's (404), a model that failed is an upstream
    failure (502), whatever Bedrock's status."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    message = (data.get("message") or data.get("Message")) if isinstance(data, dict) else None
    kind = next((v for k, v in headers.items() if k.lower() == "x-amzn-errortype"), "").partition(":")[0]
    if isinstance(message, str) and any(s in message for s in CONFIGURATION_ERRORS):
        status = 404
    elif kind == "ModelErrorException":
        status = 502
    return status, orjson.dumps({"error": {
        "message": message if isinstance(message, str) and message else f"the upstream answered HTTP {status}",
        "type": "invalid_request_error", "param": None, "code": kind or "upstream"}})


# ConverseStream's event stream → OpenAI chunks -----------------------------------------------------------

class StreamError(Exception):
    """The event stream is garbled, or Bedrock sent an exception in it."""


class ChunkStream:
    """Reads ConverseStream's binary event stream (AWS event-stream framing, decoded and CRC-checked by
    botocore) as OpenAI chunk events, ending with a usage chunk and ``[DONE]`` at its ``metadata`` event."""

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer  # on first use only: see the module's docstring

        self._buffer = EventStreamBuffer()
        self.base: dict[str, Any] = {"id": _completion_id(), "object": "chat.completion.chunk",
                                     "created": int(time.time()), "model": ""}
        self.tools: dict[int, int] = {}  # content block index → OpenAI tool_call index

    def feed(self, data: bytes) -> bytes:
        """The OpenAI events the bytes complete; StreamError for a garbled stream or an exception in it."""
        from botocore.eventstream import ParserError

        self._buffer.add_data(data)
        out = bytearray()
        try:
            for message in self._buffer:
                out += self._message(message)
        # botocore raises ParserError for bad lengths and checksums; a frame can pass its checksum and still
        # be short, hold an unknown header type, or text that is not UTF-8.
        except (ParserError, struct.error, KeyError, UnicodeDecodeError) as exc:
            raise StreamError(f"a garbled event stream ({type(exc).__name__})") from exc
        return bytes(out)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({**self.base, "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"

    def _message(self, message: EventStreamMessage) -> bytes:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "exception":
            raise StreamError(f"{headers.get(':exception-type', 'exception')}: {_said(message.payload)}")
        if kind == "error":
            raise StreamError(f"{headers.get(':error-code', 'error')}: {headers.get(':error-message', '')}"[:300])
        if kind != "event":
            return b""
        try:
            event = orjson.loads(message.payload)
        except orjson.JSONDecodeError as exc:
            raise StreamError("an event that is not JSON") from exc
        return self._event(str(headers.get(":event-type", "")), event) if isinstance(event, dict) else b""

    def _event(self, name: str, event: dict[str, Any]) -> bytes:
        if name == "messageStart":
            return self._chunk({"role": "assistant", "content": ""})
        if name == "contentBlockStart":
            use = (event.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return b""
            index = self.tools[int(event.get("contentBlockIndex") or 0)] = len(self.tools)
            return self._chunk({"tool_calls": [{"index": index, "id": str(use.get("toolUseId", "")),
                                                "type": "function",
                                                "function": {"name": str(use.get("name", "")), "arguments": ""}}]})
        if name == "contentBlockDelta":
            return self._delta(int(event.get("contentBlockIndex") or 0), event.get("delta") or {})
        if name == "messageStop":
            return self._chunk({}, finish_reason(event.get("stopReason")))
        if name == "metadata":
            return (b"data: " + orjson.dumps({**self.base, "choices": [], "usage": usage(event.get("usage") or {})})
                    + b"\n\ndata: [DONE]\n\n")
        return b""  # contentBlockStop, and event types added later

    def _delta(self, block: int, delta: dict[str, Any]) -> bytes:
        if isinstance(delta.get("text"), str) and delta["text"]:
            return self._chunk({"content": delta["text"]})
        use = delta.get("toolUse")
        if isinstance(use, dict):
            return self._chunk({"tool_calls": [{"index": self.tools.get(block, 0),
                                                "function": {"arguments": str(use.get("input", ""))}}]})
        return b""  # reasoning deltas have no OpenAI counterpart


def _said(payload: bytes) -> str:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "(no message)"
    message = (data.get("message") or data.get("Message")) if isinstance(data, dict) else None
    return str(message or "(no message)")[:300]
