"""The rest of the OpenAI surface clients expect: one model by id, legacy completions (official client)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest
from sqlalchemy import select

from sovstack.core.context import unit_of_work
from sovstack.core.tables import AuditEvent
from sovstack.gateway import service
from sovstack.gateway.schemas import CutoffRequest
from sovstack.gateway.tables import Usage
from tests.conftest import make_key, make_user
from tests.gateway.conftest import OPERATOR, Gateway, deployment, register
from tests.gateway.test_openai_client import client
from tests.gateway.upstream import Upstream


def test_retrieve_one_model(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    model = client(gateway).models.retrieve("bharat-chat")
    assert (model.id, model.object, model.owned_by) == ("bharat-chat", "model", "sovstack")
    assert model.created > 0
    with pytest.raises(openai.NotFoundError) as nf:
        client(gateway).models.retrieve("nope")
    assert nf.value.code == "model_not_found" and nf.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_a_withdrawn_model_is_not_found(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url, hosting_jurisdiction="US"))
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.cutoff(s, OPERATOR, CutoffRequest(jurisdiction="US"))
    with pytest.raises(openai.NotFoundError):
        client(gateway).models.retrieve("bharat-chat")
    assert client(gateway).models.list().data == []


def test_retrieve_needs_the_gateway_scope(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    reader = make_key(gateway.db, make_user(gateway.db, "reader@test.example")["id"], ["read"])
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway, key=reader).models.retrieve("bharat-chat")
    assert httpx.get(f"{gateway.url}/v1/models/bharat-chat").status_code == 401


def test_legacy_completion(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-base", deployment("local", up.url, price_in=1.0, price_out=2.0))
    raw = client(gateway).completions.with_raw_response.create(model="bharat-base", prompt="Once upon",
                                                              max_tokens=5, echo=False)
    reply = raw.parse()
    assert reply.choices[0].text == " continued by local" and reply.model == "bharat-base"
    assert raw.headers["x-sovstack-deployment"] == "local"
    sent = up.received[-1]
    assert sent["model"] == "up-local" and sent["prompt"] == "Once upon" and sent["max_tokens"] == 5
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.endpoint, usage.tokens_in, usage.tokens_out, usage.outcome) == ("completions", 6, 4, "ok")
        assert usage.cost == pytest.approx((6 * 1.0 + 4 * 2.0) / 1e6)
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.completions")).one()
        assert '"answered":"local"' in event.detail


def test_legacy_completion_streams_and_fails_over(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    broken, good = upstreams("broken", "500"), upstreams("good")
    register(gateway.db, "bharat-base", deployment("broken", broken.url, priority=1),
             deployment("good", good.url, priority=2))
    stream = client(gateway).completions.create(model="bharat-base", prompt="Once", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "part0 part1 part2 "
    assert good.received[-1]["stream_options"] == {"include_usage": True}
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.endpoint, usage.deployment, usage.tokens_in, usage.tokens_out) == ("completions", "good", 5, 3)


def test_legacy_completion_needs_a_prompt(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client(gateway).post("/completions", body={"model": "x"}, cast_to=object)
    assert bad.value.body["param"] == "prompt"  # type: ignore[index]
