"""A deployment with backend: bedrock, against an upstream that behaves like Bedrock Runtime's Converse API:
it checks each call's SigV4 signature (recomputed with botocore from the secret it knows) and streams in AWS's
binary event-stream framing (encoded here; the gateway decodes with botocore, an independent reader)."""

from __future__ import annotations

import base64
import hmac
import json
import re
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx
import openai
import pytest
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sovstack.core.tables import AuditEvent
from sovstack.gateway.tables import Usage
from tests.conftest import free_port
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.test_openai_client import client
from tests.gateway.upstream import Upstream, serve

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE/session+token=="
REGION = "eu-central-1"
MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
KEY = f"{REGION}/{ACCESS_KEY}:{SECRET}"  # 127.0.0.1 names no region: the key states it
AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
                           r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
                           r"Signature=(?P<signature>[0-9a-f]{64})")
TOOL = {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
# ok; "exception": an exception event mid-stream; "drop": the connection cut; "garbled": a frame's bytes changed;
# "model_error": 424 ModelErrorException (the model failed to answer).
MODES = ("ok", "exception", "drop", "garbled", "model_error")


def frame(headers: dict[str, str], payload: dict[str, Any]) -> bytes:
    """One AWS event-stream message: a prelude (total length, headers length, their CRC32), headers (all of
    type 7, string), the payload, and the CRC32 of everything before it."""
    head = b"".join(bytes([len(name)]) + name + b"\x07" + struct.pack(">H", len(value)) + value
                    for name, value in ((k.encode(), v.encode()) for k, v in headers.items()))
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(head) + len(body) + 4, len(head))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + body
    return message + struct.pack(">I", zlib.crc32(message))


def event(name: str, payload: dict[str, Any]) -> bytes:
    return frame({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                 {**payload, "p": "abcdefghijklmnop"})  # Bedrock pads its events


def aws_error(status: int, kind: str, message: str) -> Response:
    return JSONResponse({"message": message}, status_code=status,
                        headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"})


def signature_problem(request: Request, body: bytes, token: str | None) -> Response | None:
    """Bedrock's answer to a request whose SigV4 signature does not hold, recomputed over what arrived."""
    found = AUTHORIZATION.fullmatch(request.headers.get("authorization", ""))
    if found is None:
        return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    if found["key"] != ACCESS_KEY or request.headers.get("x-amz-security-token") != token:
        return aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    signed, stamp = found["signed"].split(";"), request.headers.get("x-amz-date", "")
    fresh = abs((datetime.now(UTC) - datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)).total_seconds())
    if (found["date"], found["region"], found["service"]) != (stamp[:8], REGION, "bedrock") or fresh > 300 or not (
            {"host", "x-amz-date", "content-type"} <= set(signed) <= set(request.headers)):
        return aws_error(403, "InvalidSignatureException", "Credential should be scoped to a valid region.")
    raw = AWSRequest(method=request.method, url=f"http://{request.headers['host']}{request.scope['raw_path'].decode()}",
                     data=body, headers={name: request.headers[name] for name in signed})
    raw.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET, token), "bedrock", REGION)
    if not hmac.compare_digest(signer.signature(signer.string_to_sign(raw, signer.canonical_request(raw)), raw),
                               found["signature"]):
        return aws_error(403, "InvalidSignatureException", "The request signature we calculated does not match "
                         "the signature you provided. Check your AWS Secret Access Key and signing method.")
    return None


@dataclass
class BedrockUpstream:
    """Answers Converse and ConverseStream like Bedrock Runtime for one model id, or fails as ``mode`` says."""

    mode: str = "ok"
    token: str | None = None  # the session token its caller must sign with, if any
    received: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # as they came, percent-encoding and all
    refused: list[str] = field(default_factory=list)

    async def _check(self, request: Request) -> tuple[dict[str, Any], Response | None]:
        raw = await request.body()
        self.paths.append(request.scope["raw_path"].decode())
        problem = signature_problem(request, raw, self.token)
        if problem is not None:
            self.refused.append(problem.headers["x-amzn-ErrorType"].split(":")[0])
            return {}, problem
        body = json.loads(raw)
        self.received.append(body)
        if request.path_params["model_id"] != MODEL_ID:
            return body, aws_error(400, "ValidationException", "The provided model identifier is invalid.")
        if self.mode == "model_error":
            return body, aws_error(424, "ModelErrorException", "The model returned an error.")
        if not body["messages"] or body["messages"][0]["role"] != "user":
            return body, aws_error(400, "ValidationException", "A conversation must start with a user message. "
                                   "Try again with a conversation that starts with a user message.")
        return body, None

    def wants_tool(self, body: dict[str, Any]) -> bool:
        answered = any("toolResult" in block for block in body["messages"][-1]["content"])
        return bool(body.get("toolConfig")) and not answered

    async def converse(self, request: Request) -> Response:
        body, refused = await self._check(request)
        if refused is not None:
            return refused
        content: list[dict[str, Any]] = [{"text": "hello from bedrock"}]
        if self.wants_tool(body):
            content = [{"text": "Let me look."}, {"toolUse": {
                "toolUseId": "tooluse_01", "name": body["toolConfig"]["tools"][0]["toolSpec"]["name"],
                "input": {"city": "Pune"}}}]
        return JSONResponse({"output": {"message": {"role": "assistant", "content": content}},
                             "stopReason": "tool_use" if self.wants_tool(body) else "end_turn",
                             "usage": {"inputTokens": 21, "outputTokens": 9, "totalTokens": 34,
                                       "cacheReadInputTokens": 4}, "metrics": {"latencyMs": 120}})

    def events(self, body: dict[str, Any]) -> list[bytes]:
        out = [event("messageStart", {"role": "assistant"})]
        out += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": f"part{i} "}}) for i in range(3)]
        out += [event("contentBlockStop", {"contentBlockIndex": 0})]
        if self.wants_tool(body):
            out += [event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
                        "toolUseId": "tooluse_01", "name": body["toolConfig"]["tools"][0]["toolSpec"]["name"]}}}),
                    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}}),
                    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Pune"}'}}}),
                    event("contentBlockStop", {"contentBlockIndex": 1})]
        return out + [event("messageStop", {"stopReason": "tool_use" if self.wants_tool(body) else "end_turn"}),
                      event("metadata", {"usage": {"inputTokens": 25, "outputTokens": 15, "totalTokens": 40},
                                         "metrics": {"latencyMs": 300}})]

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        for i, data in enumerate(self.events(body)):
            if i == 2 and self.mode == "exception":
                data = frame({":exception-type": "modelStreamErrorException", ":content-type": "application/json",
                              ":message-type": "exception"}, {"message": "The model stopped answering"})
            if i == 2 and self.mode == "drop":
                raise RuntimeError("injected: connection dropped mid-stream")
            if i == 2 and self.mode == "garbled":
                data = data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]  # one payload byte changed
            yield data[:7]  # a frame split across writes, as TCP may deliver it
            yield data[7:]

    async def converse_stream(self, request: Request) -> Response:
        body, refused = await self._check(request)
        if refused is not None:
            return refused
        return StreamingResponse(self.stream(body), media_type="application/vnd.amazon.eventstream")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/model/{model_id}/converse", self.converse, methods=["POST"]),
                                 Route("/model/{model_id}/converse-stream", self.converse_stream, methods=["POST"])])


@pytest.fixture
def bedrock() -> Iterator[Callable[..., tuple[BedrockUpstream, str]]]:
    servers = []

    def make(mode: str = "ok", token: str | None = None) -> tuple[BedrockUpstream, str]:
        up, port = BedrockUpstream(mode, token), free_port()
        servers.append(serve(up.app(), port))
        return up, f"http://127.0.0.1:{port}"

    yield make
    for server in servers:
        server.should_exit = True


def bedrock_deployment(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return deployment(name, url, **{"backend": "bedrock", "upstream_model": MODEL_ID, "api_key": KEY, **extra})


def chat(gw: Gateway, **body: Any) -> Any:
    return client(gw).chat.completions.create(**{"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                  **body})


def test_chat_goes_to_converse_signed_and_is_metered(gateway: Gateway, bedrock: Callable[..., Any]) -> None:
    up, url = bedrock()
    register(gateway.db, "m", bedrock_deployment("bedrock", url, price_in=1.0, price_out=1.0))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="m", temperature=1.5, top_p=0.9, stop="END", max_tokens=100,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    reply = raw.parse()
    assert reply.choices[0].message.content == "hello from bedrock" and reply.choices[0].finish_reason == "stop"
    assert reply.model == "m" and raw.headers["x-sovstack-deployment"] == "bedrock"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (25, 9)  # type: ignore[union-attr]
    assert up.paths == ["/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"] and up.refused == []
    assert up.received == [{"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                            "system": [{"text": "Be brief."}],
                            "inferenceConfig": {"maxTokens": 100, "temperature": 1.0, "topP": 0.9,
                                                "stopSequences": ["END"]}}]
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.deployment, usage.tokens_in, usage.tokens_out, usage.outcome, usage.estimated) == (
            "bedrock", 25, 9, "ok", False)
        assert usage.cost == pytest.approx(34 / 1e6)


def test_a_streamed_chat_from_converse_stream(gateway: Gateway, bedrock: Callable[..., Any]) -> None:
    up, url = bedrock(token=TOKEN)
    register(gateway.db, "m", bedrock_deployment("bedrock", url, api_key=f"{KEY}:{TOKEN}"))
    chunks = list(chat(gateway, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "part0 part1 part2 "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        25, 15)
    assert all(c.model == "m" for c in chunks)
    assert up.paths == ["/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"] and up.refused == []
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.tokens_in, usage.tokens_out, usage.outcome, usage.estimated) == (25, 15, "ok", False)


@pytest.mark.parametrize(("api_key", "refusal"), [
    (f"{REGION}/{ACCESS_KEY}:{SECRET[:-1]}X", "InvalidSignatureException"),  # a wrong secret
    (f"{REGION}/AKIAI44QH8DHBEXAMPLE:{SECRET}", "UnrecognizedClientException")])  # a key id AWS does not know
@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_credential_fails_over_and_is_never_relayed(gateway: Gateway, bedrock: Callable[..., Any],
                                                          upstreams: Callable[..., Upstream], api_key: str,
                                                          refusal: str, stream: bool) -> None:
    up, url = bedrock()
    register(gateway.db, "m", bedrock_deployment("bedrock", url, api_key=api_key, priority=1),
             deployment("local", upstreams("local").url, priority=2))
    register(gateway.db, "solo", bedrock_deployment("bedrock-solo", url, api_key=api_key))
    auth = {"authorization": f"Bearer {gateway.key}"}
    body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    served = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert served.status_code == 200 and served.headers["x-sovstack-deployment"] == "local"
    assert served.headers["x-sovstack-tries"] == "2" and up.refused == [refusal]
    alone = httpx.post(f"{gateway.url}/v1/chat/completions", json={**body, "model": "solo"}, headers=auth, timeout=30)
    assert alone.status_code == 502 and "bedrock-solo: HTTP 403" in alone.json()["error"]["message"]
    assert "security token" not in alone.text and "signature we calculated" not in alone.text
    assert SECRET[:-1] not in alone.text and up.refused == [refusal] * 2


@pytest.mark.parametrize(("model_id", "mode", "alone", "reason"), [
    ("anthropic.claude-nine-v1:0", "ok", 502, "HTTP 404: the upstream refused the gateway's request"),
    (MODEL_ID, "model_error", 503, "HTTP 502")])
def test_a_wrong_model_id_or_a_failed_model_fails_over(gateway: Gateway, bedrock: Callable[..., Any],
                                                       upstreams: Callable[..., Upstream], model_id: str, mode: str,
                                                       alone: int, reason: str) -> None:
    """Bedrock answers a model id it does not know with 400, as if the caller were wrong, and a model that failed
    with 424: neither is the caller's, and neither is relayed."""
    up, url = bedrock(mode)
    register(gateway.db, "m", bedrock_deployment("bedrock", url, upstream_model=model_id, priority=1),
             deployment("local", upstreams("local").url, priority=2))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-sovstack-deployment"] == "local" and raw.headers["x-sovstack-tries"] == "2"
    assert up.paths == [f"/model/{model_id.replace(':', '%3A')}/converse"] and up.refused == []
    register(gateway.db, "solo", bedrock_deployment("bedrock-solo", url, upstream_model=model_id))
    failed = httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {gateway.key}"},
                        json={"model": "solo", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert failed.status_code == alone and f"bedrock-solo: {reason}" in failed.json()["error"]["message"]
    assert "model identifier" not in failed.text and "model returned an error" not in failed.text


def test_a_request_bedrock_refuses_comes_back_in_openai_shape(gateway: Gateway, bedrock: Callable[..., Any]) -> None:
    _up, url = bedrock()
    register(gateway.db, "m", bedrock_deployment("bedrock", url))
    with pytest.raises(openai.BadRequestError) as bad:
        chat(gateway, messages=[{"role": "assistant", "content": "Hello?"}])
    assert bad.value.body == {
        "message": "A conversation must start with a user message. Try again with a conversation that starts with "
                   "a user message.", "type": "invalid_request_error", "param": None, "code": "ValidationException",
        "deployment": "bedrock"}


def test_tools_both_ways(gateway: Gateway, bedrock: Callable[..., Any]) -> None:
    up, url = bedrock()
    register(gateway.db, "m", bedrock_deployment("bedrock", url))
    reply = chat(gateway, tools=[TOOL], tool_choice="required", messages=[{"role": "user", "content": "Weather?"}])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look."
    [call] = choice.message.tool_calls or []
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "tooluse_01", "weather", {"city": "Pune"})
    assert up.received[-1]["toolConfig"] == {"toolChoice": {"any": {}}, "tools": [{"toolSpec": {
        "name": "weather", "description": "Weather in a city",
        "inputSchema": {"json": TOOL["function"]["parameters"]}}}]}  # type: ignore[index]
    # The next turn carries the call and its result: an assistant toolUse, then a user toolResult.
    reply = chat(gateway, tools=[TOOL], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "tooluse_01", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Pune"}'}}]},
        {"role": "tool", "tool_call_id": "tooluse_01", "content": "31 C"}])
    assert reply.choices[0].message.content == "hello from bedrock"
    assert up.received[-1]["messages"][1:] == [
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_01", "name": "weather",
                                                       "input": {"city": "Pune"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_01", "content": [{"text": "31 C"}]}}]}]
    assert "toolChoice" not in up.received[-1]["toolConfig"]
    chat(gateway, tools=[TOOL], tool_choice="none")  # Converse has no "none": the tools stay behind
    assert "toolConfig" not in up.received[-1]


def test_a_streamed_tool_call(gateway: Gateway, bedrock: Callable[..., Any]) -> None:
    _up, url = bedrock()
    register(gateway.db, "m", bedrock_deployment("bedrock", url))
    chunks = list(chat(gateway, tools=[TOOL], stream=True, messages=[{"role": "user", "content": "Weather?"}]))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "tooluse_01" and calls[0].function.name == "weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Pune"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_images_go_as_bytes(gateway: Gateway, bedrock: Callable[..., Any]) -> None:
    up, url = bedrock()
    register(gateway.db, "m", bedrock_deployment("bedrock", url))
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()
    chat(gateway, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}])
    assert up.received[-1]["messages"][0]["content"] == [
        {"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": png}}}]
    with pytest.raises(openai.BadRequestError) as bad:  # the gateway fetches nothing for Bedrock
        chat(gateway, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}]}])
    assert bad.value.param == "messages.0.content.0" and len(up.received) == 1


@pytest.mark.parametrize(("mode", "reason"), [
    ("exception", "the upstream's event stream failed: modelStreamErrorException: The model stopped answering"),
    ("drop", "the upstream closed the connection"),
    ("garbled", "the upstream's event stream failed: a garbled event stream (ChecksumMismatch)")])
def test_a_broken_stream_is_an_interruption_and_counts_against_the_deployment(
        gateway: Gateway, bedrock: Callable[..., Any], upstreams: Callable[..., Upstream], mode: str,
        reason: str) -> None:
    _up, url = bedrock(mode)
    register(gateway.db, "m", bedrock_deployment("bedrock", url, priority=1, failures_to_open=1),
             deployment("local", upstreams("local").url, priority=2))
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {gateway.key}"},
                      json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as resp:
        body = resp.read().decode()
    assert "stream_interrupted" in body and "[DONE]" not in body
    assert "model stopped answering" not in body
    raw = client(gateway).chat.completions.with_raw_response.create(  # its circuit is open: the next call skips it
        model="m", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-sovstack-deployment"] == "local" and raw.headers["x-sovstack-tries"] == "1"
    with gateway.db.session() as s:
        interrupted = s.scalars(select(Usage).order_by(Usage.id)).first()
        assert interrupted is not None and interrupted.outcome == "interrupted"
        audited = s.scalars(select(AuditEvent.reasons).where(AuditEvent.action == "gateway.chat")
                            .order_by(AuditEvent.seq)).first()
        assert json.loads(audited or "[]") == [f"bedrock: {reason} mid-stream"]


def test_claude_clients_and_the_responses_api_reach_bedrock(gateway: Gateway, bedrock: Callable[..., Any]) -> None:
    up, url = bedrock()
    register(gateway.db, "m", bedrock_deployment("bedrock", url))
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)
    with sdk.messages.stream(model="m", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        assert "".join(stream.text_stream) == "part0 part1 part2 "
    assert up.received[-1]["inferenceConfig"] == {"maxTokens": 50}
    assert client(gateway).responses.create(model="m", input="hi").output_text == "hello from bedrock"
    with pytest.raises(openai.BadRequestError) as emb:
        client(gateway).embeddings.create(model="m", input="x")
    assert "serves /v1/embeddings" in emb.value.message and len(up.received) == 2


def test_credentials_are_checked_at_registration(gateway: Gateway, bedrock: Callable[..., Any]) -> None:
    auth = {"authorization": f"Bearer {gateway.admin_key}"}
    httpx.post(f"{gateway.url}/api/v1/gateway/models", json={"name": "m"}, headers=auth).raise_for_status()
    _up, url = bedrock()
    body = {**bedrock_deployment("bedrock", url), "model": "m"}
    aws = "https://bedrock-runtime.eu-central-1.amazonaws.com"
    for change in ({"api_key": f"{ACCESS_KEY}/{SECRET}"}, {"api_key": None}, {"api_key": f"{ACCESS_KEY}:{SECRET}"},
                   {"api_key": f"us-east-1/{ACCESS_KEY}:{SECRET}", "base_url": aws},
                   {"api_key": f"eu-central/{ACCESS_KEY}:{SECRET}"}, {"api_key": f"{KEY}:bad:token"}):
        refused = httpx.post(f"{gateway.url}/api/v1/gateway/deployments", json={**body, **change}, headers=auth)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "api_key", refused.text
        assert "api_key" in refused.json()["error"]["message"] and SECRET not in refused.text
    made = httpx.post(f"{gateway.url}/api/v1/gateway/deployments", headers=auth,
                      json={**body, "api_key": f"{ACCESS_KEY}:{SECRET}", "base_url": aws})
    assert made.status_code == 201 and made.json()["backend"] == "bedrock" and SECRET not in made.text
    # A catalogue that turns a deployment into a Bedrock one keeping its old key is refused the same way.
    plain = deployment("plain", url, api_key="sk-plain-key")
    catalogue: dict[str, Any] = {"models": [{"name": "m", "deployments": [plain]}]}
    apply = f"{gateway.url}/api/v1/gateway/apply"
    assert httpx.post(apply, json=catalogue, headers=auth).status_code == 200
    catalogue["models"][0]["deployments"][0] = {**deployment("plain", url, backend="bedrock"), "api_key": None}
    refused = httpx.post(apply, json=catalogue, headers=auth)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "api_key", refused.text
