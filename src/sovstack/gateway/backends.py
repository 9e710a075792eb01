"""How a deployment's upstream is spoken to (its ``backend``): what to send, and how to read the answer.

The proxy speaks OpenAI's chat and completions API on both sides. A backend adapts one upstream API
to it: ``openai`` is the identity; ``anthropic`` translates to and from the Messages API
(gateway/anthropic.py); ``bedrock`` to and from Amazon Bedrock's Converse API, signed (gateway/bedrock.py).
Adapters hold no state between requests; a stream's state lives in the object ``stream`` returns,
and the access tokens some upstreams want (``vertex``) in the proxy's state (gateway/tokens.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import quote

import orjson

from sovstack.gateway import anthropic, bedrock, http1, sse, vertex
from sovstack.gateway.routing import Candidate
from sovstack.gateway.tokens import Fetch

AZURE_API_VERSION = "2024-10-21"  # Azure OpenAI's generally available data-plane API (stream usage included)


class Stream(Protocol):
    """An upstream stream as OpenAI server-sent events (what ``proxy._relay`` parses, per the SSE spec)."""

    def iter_bytes(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    endpoints: frozenset[str]  # the gateway endpoints this kind of upstream can serve
    # How a call's access token is made from the deployment's key (the proxy adds it as a bearer);
    # None: whatever ``request`` puts in the headers is all the upstream needs.
    access_token: Fetch | None

    def request(self, cand: Candidate, path: str, body: dict[str, Any],
                stream: bool) -> tuple[str, bytes, dict[str, str]]:
        """The URL, body and headers of the upstream call for an OpenAI-shaped ``body``."""
        ...

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        """The upstream's JSON answer in OpenAI's shape."""
        ...

    def error(self, content: bytes, status: int, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """The upstream's 4xx answer in OpenAI's error shape, and the status to judge it by."""
        ...

    def stream(self, resp: http1.Response) -> Stream:
        """The upstream's event stream as OpenAI chunk events."""
        ...


class OpenAIBackend:
    """Any OpenAI-compatible server: the body goes as it came, with the deployment's model name."""

    endpoints = frozenset({"chat", "completions", "embeddings", "messages", "responses", "moderations", "rerank"})
    access_token: Fetch | None = None

    def request(self, cand: Candidate, path: str, body: dict[str, Any],
                stream: bool) -> tuple[str, bytes, dict[str, str]]:
        upstream = {**body, "model": cand.upstream_model}
        if stream:  # usage arrives in a last chunk only when asked for: metering needs it
            upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = {"content-type": "application/json"}
        if cand.api_key:
            headers["authorization"] = f"Bearer {cand.api_key}"
        return cand.base_url + path, orjson.dumps(upstream), headers

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    def error(self, content: bytes, status: int, headers: Mapping[str, str]) -> tuple[int, bytes]:
        return status, content

    def stream(self, resp: http1.Response) -> Stream:
        return resp


class AzureOpenAIBackend(OpenAIBackend):
    """Azure OpenAI: the OpenAI API under ``{base_url}/openai/deployments/{upstream_model}``, with an
    ``api-version`` and the key in an ``api-key`` header (``base_url`` is the resource's endpoint,
    ``https://NAME.openai.azure.com``; ``upstream_model`` is the Azure deployment's name)."""

    endpoints = frozenset({"chat", "completions", "embeddings", "messages", "responses"})

    def request(self, cand: Candidate, path: str, body: dict[str, Any],
                stream: bool) -> tuple[str, bytes, dict[str, str]]:
        _, payload, headers = super().request(cand, path, body, stream)
        headers.pop("authorization", None)
        if cand.api_key:
            headers["api-key"] = cand.api_key
        deployment = quote(cand.upstream_model, safe="")
        return (f"{cand.base_url}/openai/deployments/{deployment}{path}?api-version={AZURE_API_VERSION}",
                payload, headers)


class VertexBackend(OpenAIBackend):
    """Vertex AI's OpenAI-compatible endpoint (chat only): ``base_url`` is
    ``https://LOCATION-aiplatform.googleapis.com/v1/projects/PROJECT/locations/LOCATION/endpoints/openapi``,
    ``upstream_model`` a name like ``google/gemini-2.0-flash-001``, ``api_key`` the service-account key,
    which stays in the gateway: calls carry an access token made with it (gateway/vertex.py)."""

    endpoints = frozenset({"chat", "messages", "responses"})
    access_token: Fetch | None = staticmethod(vertex.fetch_token)

    def request(self, cand: Candidate, path: str, body: dict[str, Any],
                stream: bool) -> tuple[str, bytes, dict[str, str]]:
        url, payload, headers = super().request(cand, path, body, stream)
        headers.pop("authorization", None)  # the key itself: never sent
        return url, payload, headers


class AnthropicBackend:
    """Anthropic's Messages API (``POST {base_url}/messages``); chat only."""

    endpoints = frozenset({"chat", "messages", "responses"})  # the Responses API is sent on as chat
    access_token: Fetch | None = None

    def request(self, cand: Candidate, path: str, body: dict[str, Any],
                stream: bool) -> tuple[str, bytes, dict[str, str]]:
        headers = {"content-type": "application/json", "anthropic-version": anthropic.API_VERSION}
        if cand.api_key:
            headers["x-api-key"] = cand.api_key
        payload = anthropic.messages_request(body, cand.upstream_model)
        return cand.base_url + "/messages", orjson.dumps(payload), headers

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        return anthropic.chat_from_message(data)

    def error(self, content: bytes, status: int, headers: Mapping[str, str]) -> tuple[int, bytes]:
        return status, anthropic.openai_error(content, status)

    def stream(self, resp: http1.Response) -> Stream:
        return AnthropicLines(resp)


class AnthropicLines:
    """An Anthropic event stream read as OpenAI chunk events; a broken stream is an upstream failure."""

    def __init__(self, resp: http1.Response) -> None:
        self._resp = resp

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        chunks, parser = anthropic.ChunkStream(), sse.Parser()  # read per the SSE specification, like OpenAI's
        async for data in self._resp.iter_bytes():
            lines: list[str] = []
            for event in parser.feed(data):
                try:
                    lines += chunks.feed("data: " + event.data)
                except orjson.JSONDecodeError as exc:
                    raise http1.ProtocolFailed("garbage in the stream") from exc
                except anthropic.StreamError as exc:
                    raise http1.ProtocolFailed(f"the upstream sent an error event: {exc}") from exc
            out = b"".join(line.encode() + b"\n\n" for line in lines if line)  # one event per data line
            if out:
                yield out

    def close(self) -> None:
        self._resp.close()


class BedrockBackend:
    """Amazon Bedrock's Converse API (``POST {base_url}/model/{upstream_model}/converse``, or ``converse-stream``),
    each call signed with SigV4 by the credentials in the deployment's ``api_key``; chat only."""

    endpoints = frozenset({"chat", "messages", "responses"})  # the Responses API is sent on as chat
    access_token: Fetch | None = None  # signed per call instead

    def request(self, cand: Candidate, path: str, body: dict[str, Any],
                stream: bool) -> tuple[str, bytes, dict[str, str]]:
        target = bedrock.url(cand.base_url, cand.upstream_model, stream)
        payload = orjson.dumps(bedrock.converse_request(body))
        return target, payload, bedrock.signed_headers(cand.api_key, cand.base_url, target, payload)

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        return bedrock.chat_from_converse(data)

    def error(self, content: bytes, status: int, headers: Mapping[str, str]) -> tuple[int, bytes]:
        return bedrock.openai_error(content, status, headers)

    def stream(self, resp: http1.Response) -> Stream:
        return BedrockEvents(resp)


class BedrockEvents:
    """A ConverseStream answer read as OpenAI chunk events; a garbled stream or an exception in it is an
    upstream failure."""

    def __init__(self, resp: http1.Response) -> None:
        self._resp = resp

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        chunks = bedrock.ChunkStream()
        async for data in self._resp.iter_bytes():
            try:
                out = chunks.feed(data)
            except bedrock.StreamError as exc:
                raise http1.ProtocolFailed(f"the upstream's event stream failed: {exc}") from exc
            if out:
                yield out

    def close(self) -> None:
        self._resp.close()


# Read-only: the kinds are fixed at import; adapters keep no state.
BACKENDS: Mapping[str, Backend] = MappingProxyType({"openai": OpenAIBackend(), "anthropic": AnthropicBackend(),
                                                   "azure": AzureOpenAIBackend(), "bedrock": BedrockBackend(),
                                                   "vertex": VertexBackend()})


def of(cand: Candidate) -> Backend:
    return BACKENDS.get(cand.backend) or BACKENDS["openai"]


def serving(candidates: Sequence[Candidate], endpoint: str) -> list[Candidate]:
    """The candidates whose kind of upstream can serve ``endpoint`` (an Anthropic one has no embeddings)."""
    return [c for c in candidates if endpoint in of(c).endpoints]
