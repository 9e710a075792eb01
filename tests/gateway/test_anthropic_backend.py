"""A deployment with backend: anthropic, called with the Messages API, behind the OpenAI surface."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import yaml
from sqlalchemy import select

from sovstack.cli import run
from sovstack.gateway.tables import Usage
from tests.gateway.anthropic_upstream import AnthropicUpstream
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.test_openai_client import client
from tests.gateway.upstream import Upstream

TOOL = {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def claude_deployment(name: str, up: AnthropicUpstream, **extra: object) -> dict[str, object]:
    return deployment(name, up.url, backend="anthropic", api_key="sk-ant-upstream", **extra)


def test_chat_is_sent_as_a_message(gateway: Gateway, anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude")
    register(gateway.db, "frontier-chat", claude_deployment("claude", up, price_in=1.0, price_out=1.0))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="frontier-chat", temperature=1.5, stop="END", user="u-7",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    reply = raw.parse()
    assert reply.choices[0].message.content == "hello from claude" and reply.choices[0].finish_reason == "stop"
    assert reply.model == "frontier-chat" and raw.headers["x-sovstack-deployment"] == "claude"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (25, 9)  # type: ignore[union-attr]
    sent, headers = up.received[-1], up.headers[-1]
    assert headers["x-api-key"] == "sk-ant-upstream" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert sent == {"model": "up-claude", "system": "Be brief.", "max_tokens": 4096, "temperature": 1.0,
                    "stop_sequences": ["END"], "metadata": {"user_id": "u-7"},
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.deployment, usage.tokens_in, usage.tokens_out, usage.outcome) == ("claude", 25, 9, "ok")
        assert usage.cost == pytest.approx(34 / 1e6)


def test_a_streamed_chat_from_an_anthropic_upstream(gateway: Gateway,
                                                    anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude")
    register(gateway.db, "frontier-chat", claude_deployment("claude", up))
    chunks = list(client(gateway).chat.completions.create(
        model="frontier-chat", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "part0 part1 part2 "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        25, 15)
    assert all(c.model == "frontier-chat" for c in chunks)
    assert up.received[-1]["stream"] is True and "stream_options" not in up.received[-1]
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).one()
        assert (usage.tokens_in, usage.tokens_out, usage.outcome) == (25, 15, "ok")


def test_tools_both_ways(gateway: Gateway, anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude")
    register(gateway.db, "frontier-chat", claude_deployment("claude", up))
    reply = client(gateway).chat.completions.create(
        model="frontier-chat", tools=[TOOL], tool_choice="required", parallel_tool_calls=False,  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather?"}])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look."
    [call] = choice.message.tool_calls or []
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (  # type: ignore[union-attr]
        "toolu_01", "weather", {"city": "Pune"})
    sent = up.received[-1]
    assert sent["tools"] == [{"name": "weather", "description": "Weather in a city",
                              "input_schema": TOOL["function"]["parameters"]}]  # type: ignore[index]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    # The next turn carries the call and its result: an assistant tool_use, then a user tool_result.
    client(gateway).chat.completions.create(model="frontier-chat", tools=[TOOL], messages=[  # type: ignore[list-item]
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_01", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Pune"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "31 C"}])
    assert up.received[-1]["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "weather",
                                           "input": {"city": "Pune"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "31 C"}]}]


def test_a_streamed_tool_call(gateway: Gateway, anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude")
    register(gateway.db, "frontier-chat", claude_deployment("claude", up))
    chunks = list(client(gateway).chat.completions.create(
        model="frontier-chat", tools=[TOOL], stream=True, messages=[{"role": "user", "content": "Weather?"}]))  # type: ignore[list-item]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "toolu_01" and calls[0].function.name == "weather"  # type: ignore[union-attr]
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Pune"}  # type: ignore[union-attr]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_claude_clients_reach_an_anthropic_upstream(gateway: Gateway,
                                                    anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude")
    register(gateway.db, "frontier-chat", claude_deployment("claude", up))
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)
    with sdk.messages.stream(model="frontier-chat", max_tokens=50,
                             messages=[{"role": "user", "content": "hi"}]) as stream:
        assert "".join(stream.text_stream) == "part0 part1 part2 "
    assert up.received[-1]["max_tokens"] == 50


def test_failover_between_kinds(gateway: Gateway, anthropic_upstreams: Callable[..., AnthropicUpstream],
                                upstreams: Callable[..., Upstream]) -> None:
    overloaded, local = anthropic_upstreams("claude", "529"), upstreams("local")
    register(gateway.db, "mixed", claude_deployment("claude", overloaded, priority=1),
             deployment("local", local.url, priority=2))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="mixed", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "hello from local"
    assert raw.headers["x-sovstack-tries"] == "2" and raw.headers["x-sovstack-deployment"] == "local"


def test_an_anthropic_client_error_comes_back_in_openai_shape(
        gateway: Gateway, anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude", "400")
    register(gateway.db, "frontier-chat", claude_deployment("claude", up))
    with pytest.raises(openai.BadRequestError) as bad:
        client(gateway).chat.completions.create(model="frontier-chat", messages=[{"role": "user", "content": "x"}])
    assert bad.value.body == {"message": "injected 400", "type": "invalid_request_error", "param": None,  # type: ignore[comparison-overlap]
                              "code": "invalid_request_error", "deployment": "claude"}


@pytest.mark.parametrize("mode", ["error_event", "drop"])
def test_a_broken_anthropic_stream_is_an_interruption(gateway: Gateway, mode: str,
                                                      anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude", mode)
    register(gateway.db, "frontier-chat", claude_deployment("claude", up))
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {gateway.key}"},
                      json={"model": "frontier-chat", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as resp:
        body = resp.read().decode()
    assert "stream_interrupted" in body and "[DONE]" not in body
    with gateway.db.session() as s:
        assert s.scalars(select(Usage.outcome)).one() == "interrupted"


def test_an_anthropic_only_model_has_no_embeddings_or_completions(
        gateway: Gateway, anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude")
    register(gateway.db, "frontier-chat", claude_deployment("claude", up))
    with pytest.raises(openai.BadRequestError) as emb:
        client(gateway).embeddings.create(model="frontier-chat", input="x")
    assert "serves /v1/embeddings" in emb.value.message
    with pytest.raises(openai.BadRequestError):
        client(gateway).completions.create(model="frontier-chat", prompt="x")
    assert up.received == []


def test_the_backend_is_validated_and_shown(gateway: Gateway) -> None:
    auth = {"authorization": f"Bearer {gateway.admin_key}"}
    body = {"name": "odd", "model": "m", "backend": "soap", "base_url": "http://127.0.0.1:1/v1",
            "upstream_model": "x", "hosting_jurisdiction": "IN", "operator": "Desi Cloud", "developer": "Bharat Models"}
    httpx.post(f"{gateway.url}/api/v1/gateway/models", json={"name": "m"}, headers=auth).raise_for_status()
    assert httpx.post(f"{gateway.url}/api/v1/gateway/deployments", json=body, headers=auth).status_code == 422
    made = httpx.post(f"{gateway.url}/api/v1/gateway/deployments", json={**body, "backend": "anthropic"}, headers=auth)
    assert made.status_code == 201 and made.json()["backend"] == "anthropic"


def test_an_anthropic_deployment_from_the_cli(gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              anthropic_upstreams: Callable[..., AnthropicUpstream]) -> None:
    up = anthropic_upstreams("claude")
    file = tmp_path / "models.yaml"
    # No upstream key: the in-process CLI seals with its own home's secret, not the test server's.
    file.write_text(yaml.safe_dump({"models": [{"name": "frontier-chat", "deployments": [
        deployment("claude", up.url, backend="anthropic")]}]}))
    home = ["--home", str(gateway.app.state.settings.home)]
    assert run([*home, "gateway", "apply", str(file), "--json"]) == 0
    capsys.readouterr()
    assert run([*home, "gateway", "deployments", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["backend"] == "anthropic"
    reply = client(gateway).chat.completions.create(model="frontier-chat", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "hello from claude"
    assert up.headers[-1]["anthropic-version"] == "2023-06-01" and "x-api-key" not in up.headers[-1]
