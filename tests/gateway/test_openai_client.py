"""The official openai client, unchanged but for base_url and api_key, against sovstack's gateway."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from sqlalchemy import select

from sovstack.core.tables import AuditEvent
from sovstack.gateway.tables import Usage
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.upstream import Upstream


def client(gw: Gateway, key: str | None = None, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key or gw.key, max_retries=0, **kw)  # type: ignore[arg-type]


def test_chat_completion_through_the_gateway(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="bharat-chat", messages=[{"role": "user", "content": "hi"}], seed=7,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    reply = raw.parse()
    assert reply.choices[0].message.content == "hello from local"
    assert reply.model == "bharat-chat"
    assert raw.headers["x-sovstack-deployment"] == "local" and raw.headers["x-sovstack-tries"] == "1"
    sent = up.received[-1]
    assert sent["model"] == "up-local" and sent["seed"] == 7 and sent["tools"][0]["function"]["name"] == "f"
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.tokens_in, usage.tokens_out, usage.deployment, usage.outcome) == (11, 7, "local", "ok")
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.chat")).one()
        assert '"answered":"local"' in event.detail and "hi" not in event.detail.replace("chat", "")


def test_streaming_relays_chunks_and_meters_usage(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    stream = client(gateway).chat.completions.create(
        model="bharat-chat", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "part0 part1 part2 "
    assert up.received[-1]["stream_options"] == {"include_usage": True}
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.tokens_in, usage.tokens_out) == (5, 3)


def test_embeddings_and_models(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "embed-small", deployment("emb", up.url))
    result = client(gateway).embeddings.create(model="embed-small", input=["a", "b"])
    assert len(result.data) == 2 and result.data[0].embedding == [0.1, 0.2, 0.3]
    assert [m.id for m in client(gateway).models.list()] == ["embed-small"]


def test_errors_come_back_in_openai_shape(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client(gateway).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="sk-00000000_wrong").chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as bad:
        client(gateway).chat.completions.create(model="nope", messages=[])
    assert bad.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as cls:
        client(gateway, default_headers={"X-Sovstack-Classification": "secret"}).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}])
    assert cls.value.body["param"] == "x-sovstack-classification"  # type: ignore[index]
