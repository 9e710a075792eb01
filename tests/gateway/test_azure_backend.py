"""A deployment with backend: azure, called the way Azure OpenAI is: its own path, api-version and api-key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openai import OpenAI
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sovstack.gateway.backends import AZURE_API_VERSION
from sovstack.gateway.tables import Usage
from tests.conftest import free_port
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.upstream import Upstream, serve

KEY = "azure-upstream-key-0123456789"


class AzureUpstream:
    """Answers like Azure OpenAI: 401 without the api-key header, 404 for another deployment name."""

    def __init__(self, deployment_name: str) -> None:
        self.name, self.inner = deployment_name, Upstream("azure")
        self.seen: list[dict[str, Any]] = []

    async def _check(self, request: Request) -> Response | None:
        self.seen.append({"path": request.url.path, "query": dict(request.query_params),
                          "api-key": request.headers.get("api-key"),
                          "authorization": request.headers.get("authorization")})
        if request.headers.get("api-key") != KEY:
            return JSONResponse({"error": {"code": "401", "message": "Access denied due to invalid subscription "
                                           f"key {request.headers.get('api-key')}"}}, status_code=401)
        if request.path_params["deployment"] != self.name or "api-version" not in request.query_params:
            return JSONResponse({"error": {"code": "DeploymentNotFound", "message": "not found"}}, status_code=404)
        return None

    async def chat(self, request: Request) -> Response:
        return await self._check(request) or await self.inner.chat(request)

    async def embeddings(self, request: Request) -> Response:
        return await self._check(request) or await self.inner.embeddings(request)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/openai/deployments/{deployment}/chat/completions", self.chat, methods=["POST"]),
            Route("/openai/deployments/{deployment}/embeddings", self.embeddings, methods=["POST"])])


@pytest.fixture
def azure() -> Iterator[Callable[[str], tuple[AzureUpstream, str]]]:
    servers = []

    def make(deployment_name: str) -> tuple[AzureUpstream, str]:
        up, port = AzureUpstream(deployment_name), free_port()
        servers.append(serve(up.app(), port))
        return up, f"http://127.0.0.1:{port}"

    yield make
    for server in servers:
        server.should_exit = True


def client(gw: Gateway) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key, max_retries=0)


def test_chat_stream_and_embeddings_go_the_azure_way(gateway: Gateway, azure: Callable[..., Any]) -> None:
    up, url = azure("gpt-4o-prod")
    register(gateway.db, "m", deployment("azure-in", url, backend="azure", upstream_model="gpt-4o-prod",
                                         api_key=KEY))
    reply = client(gateway).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "hello from azure"
    stream = client(gateway).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                     stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "part0 part1 part2 "
    assert client(gateway).embeddings.create(model="m", input=["a", "b"]).data[1].index == 1
    assert [s["path"] for s in up.seen] == ["/openai/deployments/gpt-4o-prod/chat/completions"] * 2 + [
        "/openai/deployments/gpt-4o-prod/embeddings"]
    assert all(s["query"] == {"api-version": AZURE_API_VERSION} and s["api-key"] == KEY
               and s["authorization"] is None for s in up.seen)  # the key goes as api-key, never as a bearer
    with gateway.db.session() as s:
        assert [(u.endpoint, u.tokens_in, u.estimated) for u in s.scalars(select(Usage).order_by(Usage.id))] == [
            ("chat", 11, False), ("chat", 5, False), ("embeddings", 8, False)]


def test_a_wrong_azure_key_is_the_gateways_problem_and_never_relayed(gateway: Gateway,
                                                                    azure: Callable[..., Any],
                                                                    upstreams: Callable[..., Upstream]) -> None:
    up, url = azure("gpt-4o-prod")
    register(gateway.db, "m", deployment("azure-in", url, backend="azure", upstream_model="gpt-4o-prod",
                                         api_key="wrong-key-123456789", priority=1),
             deployment("local", upstreams("local").url, priority=2))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-sovstack-deployment"] == "local" and raw.headers["x-sovstack-tries"] == "2"
    assert up.seen[0]["api-key"] == "wrong-key-123456789"
