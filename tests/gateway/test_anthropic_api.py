"""The official anthropic SDK, unchanged but for base_url and api_key, against the gateway's /v1/messages."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest
from sqlalchemy import select

from sovstack.core.tables import AuditEvent
from sovstack.gateway.tables import Usage
from tests.conftest import make_key, make_user
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.upstream import Upstream

WEATHER = {"name": "weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def claude(gw: Gateway, key: str | None = None, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key or gw.key, max_retries=0, **kw)


def test_a_message_through_the_gateway(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url, price_in=1.0, price_out=1.0))
    raw = claude(gateway).messages.with_raw_response.create(
        model="bharat-chat", max_tokens=64, system="Be brief.", extra_body={"temperature": 0.2, "top_p": 0.9},
        stop_sequences=["\n\nHuman:"], metadata={"user_id": "u-1"},
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                  {"role": "user", "content": [{"type": "text", "text": "how are "}, {"type": "text", "text": "you"}]}])
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "bharat-chat" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == "hello from local"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    assert raw.headers["x-sovstack-deployment"] == "local"
    sent = up.received[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how are you"}]
    assert (sent["model"], sent["max_tokens"], sent["temperature"], sent["top_p"], sent["stop"]) == (
        "up-local", 64, 0.2, 0.9, ["\n\nHuman:"])
    assert "metadata" not in sent
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.endpoint, usage.tokens_in, usage.tokens_out, usage.outcome) == ("messages", 11, 7, "ok")
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.messages")).one()
        assert '"answered":"local"' in event.detail


def test_streamed_message(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    with claude(gateway).messages.stream(model="bharat-chat", max_tokens=64,
                                         messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "part0 part1 part2 "
    assert final.content[0].text == text and final.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (5, 3)
    assert up.received[-1]["stream_options"] == {"include_usage": True}
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.endpoint, usage.tokens_in, usage.tokens_out, usage.outcome) == ("messages", 5, 3, "ok")


def test_raw_stream_events_in_order(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    with httpx.stream("POST", f"{gateway.url}/v1/messages", headers={"x-api-key": gateway.key},
                      json={"model": "bharat-chat", "max_tokens": 9, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("event:")]
    names = [line.split(": ", 1)[1] for line in lines]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]


def test_errors_in_anthropic_shape(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        claude(gateway).messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["type"] == "error" and nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError) as auth:
        claude(gateway, key="sk-00000000_wrong").messages.create(
            model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    resp = httpx.post(f"{gateway.url}/v1/messages", headers={"x-api-key": gateway.key},
                      json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 400
    assert resp.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                      "message": "missing required field 'max_tokens'"}}
    anonymous = httpx.post(f"{gateway.url}/v1/messages", content=b"{").json()["error"]
    assert anonymous["type"] == "authentication_error" and "x-api-key" in anonymous["message"]
    bad = httpx.post(f"{gateway.url}/v1/messages", headers={"x-api-key": gateway.key}, content=b"{not json")
    assert bad.status_code == 400 and bad.json()["type"] == "error"


def test_a_refusal_and_an_outage_in_anthropic_shape(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    down = upstreams("down", "500")
    register(gateway.db, "bharat-chat", deployment("down", down.url))
    reader = make_key(gateway.db, make_user(gateway.db, "reader@test.example")["id"], ["read"])
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        claude(gateway, key=reader).messages.create(model="bharat-chat", max_tokens=5,
                                                    messages=[{"role": "user", "content": "x"}])
    assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as outage:
        claude(gateway).messages.create(model="bharat-chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert outage.value.status_code == 503 and outage.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_an_upstream_client_error_passes_on_in_anthropic_shape(gateway: Gateway,
                                                             upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("picky", "400")
    register(gateway.db, "bharat-chat", deployment("picky", up.url))
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude(gateway).messages.create(model="bharat-chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body == {"type": "error", "error": {"type": "invalid_request_error",  # type: ignore[comparison-overlap]
                                                        "message": "injected 400: max_tokens is too large"}}


def test_an_upstream_client_error_that_is_not_json(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("picky", "400html")
    register(gateway.db, "bharat-chat", deployment("picky", up.url))
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude(gateway).messages.create(model="bharat-chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body == {"type": "error", "error": {"type": "invalid_request_error",  # type: ignore[comparison-overlap]
                                                        "message": "the model server refused the request (HTTP 400)"}}


def test_bearer_and_x_api_key_both_work(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    by_token = anthropic.Anthropic(base_url=gateway.url, auth_token=gateway.key, max_retries=0)
    reply = by_token.messages.create(model="bharat-chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert reply.content[0].text == "hello from local"  # type: ignore[union-attr]
    # A wrong bearer token is not rescued by a right x-api-key: the explicit header wins.
    resp = httpx.post(f"{gateway.url}/v1/messages", headers={"x-api-key": gateway.key,
                                                             "authorization": "Bearer sk-00000000_wrong"},
                      json={"model": "bharat-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 401


def test_tool_use_round_trip(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    image = base64.b64encode(b"\x89PNG fake").decode()
    claude(gateway).messages.create(
        model="bharat-chat", max_tokens=64, tools=[WEATHER], tool_choice={"type": "any"},  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": image}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                              {"type": "tool_use", "id": "toolu_9", "name": "weather",
                                               "input": {"city": "Pune"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "31 C"},
                                         {"type": "text", "text": "And tomorrow?"}]}])
    sent = up.received[-1]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "weather", "description": "Weather in a city", "parameters": WEATHER["input_schema"]}}]
    assert sent["tool_choice"] == "required"
    user, assistant, tool, follow = sent["messages"]
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}
    assert assistant == {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "toolu_9", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Pune"}'}}]}
    assert tool == {"role": "tool", "tool_call_id": "toolu_9", "content": "31 C"}
    assert follow == {"role": "user", "content": "And tomorrow?"}


def test_a_tool_call_answer_becomes_tool_use(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Pune"}'}}
    up.completion = lambda body: {  # type: ignore[method-assign]
        "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    reply = claude(gateway).messages.create(model="bharat-chat", max_tokens=64, tools=[WEATHER],  # type: ignore[list-item]
                                            messages=[{"role": "user", "content": "Weather?"}])
    assert reply.stop_reason == "tool_use"
    [block] = reply.content
    assert block.type == "tool_use" and (block.id, block.name, block.input) == ("call_1", "weather", {"city": "Pune"})


def test_a_streamed_tool_call(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up-local"}
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    up.chunks = lambda body, n=3: [  # type: ignore[method-assign]
        {**base, "choices": [{"index": 0, "delta": {"content": "Let me see."}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": '{"city": "Pune"}'}}]}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 6}}]
    with claude(gateway).messages.stream(model="bharat-chat", max_tokens=64, tools=[WEATHER],  # type: ignore[list-item]
                                         messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    text, tool = final.content
    assert text.type == "text" and text.text == "Let me see."
    assert tool.type == "tool_use" and (tool.id, tool.name, tool.input) == ("call_1", "weather", {"city": "Pune"})
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 6


def test_an_upstream_dying_mid_stream_is_an_error_event(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("flaky", "drop")
    register(gateway.db, "bharat-chat", deployment("flaky", up.url))
    with pytest.raises(anthropic.APIStatusError) as err, claude(gateway).messages.stream(
            model="bharat-chat", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        "".join(stream.text_stream)
    assert "failed mid-stream" in str(err.value)
    with gateway.db.session() as s:
        assert s.scalars(select(Usage.outcome)).one() == "interrupted"


def test_a_claude_client_hanging_up_is_still_metered(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("slow", upstreams("slow", "slow").url))
    with httpx.stream("POST", f"{gateway.url}/v1/messages", headers={"x-api-key": gateway.key}, timeout=30,
                      json={"model": "m", "max_tokens": 9, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as resp:
        next(resp.iter_lines())  # read the first line, then hang up
    deadline = time.monotonic() + 5
    outcomes: list[str] = []
    while time.monotonic() < deadline and not outcomes:
        with gateway.db.session() as s:
            outcomes = list(s.scalars(select(Usage.outcome)))
        time.sleep(0.1)
    assert outcomes == ["client_closed"]


def test_two_keys_at_once_get_their_own_answers(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    register(gateway.db, "m", deployment("d", upstreams("d").url))
    other = make_key(gateway.db, make_user(gateway.db, "other@test.example")["id"], ["read", "gateway"])

    def ask(i: int) -> str:
        with claude(gateway, key=(gateway.key, other)[i % 2]).messages.stream(
                model="m", max_tokens=9, messages=[{"role": "user", "content": "hi"}]) as stream:
            return "".join(stream.text_stream)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(ask, range(24))) == ["part0 part1 part2 "] * 24
    with gateway.db.session() as s:
        rows = s.execute(select(Usage.key_prefix, Usage.outcome)).all()
    assert len(rows) == 24 and {o for _, o in rows} == {"ok"} and len({k for k, _ in rows}) == 2


def test_count_tokens_is_an_estimate_for_a_gateway_key(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "m", deployment("local", up.url))
    short = claude(gateway).messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
    long = claude(gateway).messages.count_tokens(model="m", system="You are careful. " * 50,
                                                 messages=[{"role": "user", "content": "hi " * 400}])
    assert 0 < short.input_tokens < 20 and 250 < long.input_tokens < 700
    assert up.received == []
    with pytest.raises(anthropic.NotFoundError):
        claude(gateway).messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])
    reader = make_key(gateway.db, make_user(gateway.db, "reader@test.example")["id"], ["read"])
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(gateway, key=reader).messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
