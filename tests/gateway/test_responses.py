"""OpenAI's Responses API through the gateway: the official client against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from sovstack.core import identity
from sovstack.core.context import unit_of_work
from sovstack.core.schemas import MembershipCreate, OrganisationCreate, UserCreate
from sovstack.core.tables import AuditEvent
from sovstack.gateway import service
from sovstack.gateway.schemas import OrgLoggingSet
from sovstack.gateway.tables import Transcript, Usage
from tests.conftest import free_port, make_key, make_user
from tests.gateway.conftest import OPERATOR, Gateway, deployment, register
from tests.gateway.upstream import Upstream, serve

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(gw: Gateway, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(**{"base_url": f"{gw.url}/v1", "api_key": gw.key, "max_retries": 0, **kw})


class ToolUpstream(Upstream):
    """Calls get_weather when offered it and not yet answered; stops at max_tokens == 1 for 'length'."""

    def _wants_call(self, body: dict[str, Any]) -> bool:
        return bool(body.get("tools")) and body["messages"][-1]["role"] != "tool"

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = super().completion(body)
        choice = reply["choices"][0]
        if self._wants_call(body):
            choice["message"] = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_42", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Pune"}'}}]}
            choice["finish_reason"] = "tool_calls"
        elif body.get("max_tokens") == 1:
            choice["finish_reason"] = "length"
        return reply

    def chunks(self, body: dict[str, Any], n: int = 3) -> list[dict[str, Any]]:
        if not self._wants_call(body):
            return super().chunks(body, n)
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        calls = [{"index": 0, "id": "call_42", "type": "function",
                  "function": {"name": "get_weather", "arguments": ""}},
                 {"index": 0, "function": {"arguments": '{"city": '}},
                 {"index": 0, "function": {"arguments": '"Pune"}'}}]
        out = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me check. "}}]}]
        out += [{**base, "choices": [{"index": 0, "delta": {"tool_calls": [c]}, "finish_reason": None}]} for c in calls]
        out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        out.append({**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}})
        return out


@pytest.fixture
def tool_upstream() -> Iterator[ToolUpstream]:
    up = ToolUpstream("tools")
    port = free_port()
    up.server = serve(up.app(), port)
    up.url = f"http://127.0.0.1:{port}/v1"
    yield up
    up.server.should_exit = True


def usage_rows(gw: Gateway) -> list[Usage]:
    with gw.db.session() as s:
        return list(s.scalars(select(Usage)))


def test_text_answer_is_a_response_object(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "bharat-chat", deployment("local", up.url))
    raw = client(gateway).responses.with_raw_response.create(model="bharat-chat", input="hi")
    reply = raw.parse()
    assert reply.output_text == "hello from local"
    assert reply.id.startswith("resp_") and reply.object == "response" and reply.status == "completed"
    assert reply.model == "bharat-chat" and reply.output[0].type == "message"
    assert reply.output[0].id.startswith("msg_") and reply.output[0].content[0].type == "output_text"
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (11, 7, 18)
    assert raw.headers["x-sovstack-deployment"] == "local" and raw.headers["x-sovstack-tries"] == "1"
    sent = up.received[-1]
    assert sent == {"model": "up-local", "messages": [{"role": "user", "content": "hi"}]}


def test_instructions_and_input_items_become_chat_messages(gateway: Gateway,
                                                           upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "m", deployment("local", up.url))
    client(gateway).responses.create(
        model="m", instructions="Answer in Marathi.", max_output_tokens=64, temperature=0.2, top_p=0.9, store=True,
        text={"format": {"type": "json_schema", "name": "city", "strict": True,
                         "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}},
        input=[{"role": "developer", "content": "Be brief."},
               {"role": "user", "content": [{"type": "input_text", "text": "What is"},
                                            {"type": "input_text", "text": "the capital?"}]},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Of what?",
                                                                     "annotations": []}]},
               {"role": "user", "content": [{"type": "input_text", "text": "Of Maharashtra"},
                                            {"type": "input_image", "image_url": "data:image/png;base64,AAAA",
                                             "detail": "low"}]}])
    sent = up.received[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in Marathi."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is\nthe capital?"},
        {"role": "assistant", "content": "Of what?"},
        {"role": "user", "content": [{"type": "text", "text": "Of Maharashtra"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA",
                                                                         "detail": "low"}}]}]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (64, 0.2, 0.9)
    assert "store" not in sent and "input" not in sent and "instructions" not in sent
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "city", "strict": True, "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}


def test_function_call_round_trip(gateway: Gateway, tool_upstream: ToolUpstream) -> None:
    register(gateway.db, "m", deployment("tools", tool_upstream.url))
    c = client(gateway)
    history: list[Any] = [{"role": "user", "content": "Weather in Pune?"}]
    first = c.responses.create(model="m", input=history, tools=[WEATHER], tool_choice="auto")
    call = first.output[0]
    assert call.type == "function_call" and first.output_text == ""
    assert (call.name, call.call_id, json.loads(call.arguments)) == ("get_weather", "call_42", {"city": "Pune"})
    sent = tool_upstream.received[-1]
    assert sent["tools"] == [{"type": "function", "function": {k: WEATHER[k] for k in
                                                               ("name", "description", "parameters")}}]
    assert sent["tool_choice"] == "auto"
    # The documented way to carry on: the output items go back as input, with the function's output.
    history += first.output
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "31°C, sunny"})
    second = c.responses.create(model="m", input=history, tools=[WEATHER])
    assert second.output_text == "hello from tools"
    assert tool_upstream.received[-1]["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_42", "type": "function", "function": {"name": "get_weather", "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": "call_42", "content": "31°C, sunny"}]


def test_streamed_text_with_the_stream_helper(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "m", deployment("local", up.url))
    with client(gateway).responses.stream(model="m", input="hi", instructions="Be kind.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == "part0 part1 part2 " and final.status == "completed"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (5, 3)
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 3, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1
    assert up.received[-1]["stream"] is True and up.received[-1]["stream_options"] == {"include_usage": True}
    assert up.received[-1]["messages"][0] == {"role": "system", "content": "Be kind."}
    rows = usage_rows(gateway)
    assert [(r.endpoint, r.tokens_in, r.tokens_out, r.outcome) for r in rows] == [("responses", 5, 3, "ok")]


def test_raw_stream_has_event_lines_and_no_done(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("local", upstreams("local").url))
    r = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi", "stream": True},
                   headers={"Authorization": f"Bearer {gateway.key}"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-sovstack-deployment"] == "local" and r.headers["x-sovstack-tries"] == "1"
    blocks = [b for b in r.text.split("\n\n") if b]
    for block in blocks:
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        assert json.loads(data[6:])["type"] == event[7:]
    assert blocks[-1].startswith("event: response.completed") and "[DONE]" not in r.text


def test_streamed_function_call(gateway: Gateway, tool_upstream: ToolUpstream) -> None:
    register(gateway.db, "m", deployment("tools", tool_upstream.url))
    with client(gateway).responses.stream(model="m", input="Weather in Pune?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == "Let me check. "
    call = final.output[1]
    assert call.type == "function_call" and call.call_id == "call_42" and call.arguments == '{"city": "Pune"}'
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert deltas == ['{"city": ', '"Pune"}']
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments == '{"city": "Pune"}'


def test_usage_and_audit_name_the_endpoint(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("local", upstreams("local").url, price_in=1.0, price_out=2.0))
    client(gateway).responses.create(model="m", input="hi")
    (row,) = usage_rows(gateway)
    assert (row.endpoint, row.tokens_in, row.tokens_out, row.deployment, row.outcome) == (
        "responses", 11, 7, "local", "ok")
    assert row.cost == pytest.approx((11 * 1.0 + 7 * 2.0) / 1_000_000)
    with gateway.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.responses")).one()
        assert '"answered":"local"' in event.detail and '"endpoint":"responses"' in event.detail


def test_classification_header_still_routes(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    foreign, domestic = upstreams("foreign"), upstreams("domestic")
    register(gateway.db, "m",
             deployment("frontier-us-parent", foreign.url, operator="Hyper India", developer="Frontier Labs",
                        priority=1, open_weights=False, licence="proprietary"),
             deployment("desi", domestic.url, priority=2))
    c = client(gateway)
    assert c.responses.with_raw_response.create(model="m", input="hi").headers[
        "x-sovstack-deployment"] == "frontier-us-parent"
    raw = c.responses.with_raw_response.create(model="m", input="hi",
                                               extra_headers={"X-Sovstack-Classification": "sensitive"})
    assert raw.headers["x-sovstack-deployment"] == "desi" and raw.parse().output_text == "hello from domestic"
    assert len(foreign.received) == 1
    register(gateway.db, "only-foreign", deployment("frontier-only", foreign.url, operator="Hyper India"))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        c.responses.create(model="only-foreign", input="hi", extra_headers={"X-Sovstack-Classification": "sensitive"})
    assert "candidates refused" in refused.value.message and len(foreign.received) == 1


@pytest.mark.parametrize("streamed", [False, True])
def test_failing_upstream_fails_over(gateway: Gateway, upstreams: Callable[..., Upstream], streamed: bool) -> None:
    bad, good = upstreams("bad", "500"), upstreams("good")
    register(gateway.db, "m", deployment("first", bad.url, priority=1), deployment("second", good.url, priority=2))
    c = client(gateway)
    if streamed:
        with c.responses.stream(model="m", input="hi") as stream:
            text = stream.get_final_response().output_text
        assert text == "part0 part1 part2 "
    else:
        raw = c.responses.with_raw_response.create(model="m", input="hi")
        assert raw.headers["x-sovstack-tries"] == "2" and raw.parse().output_text == "hello from good"
    assert len(bad.received) == 1
    (row,) = usage_rows(gateway)
    assert (row.deployment, row.tries, row.endpoint) == ("second", 2, "responses")


def test_mid_stream_failure_ends_in_response_failed(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("flaky", upstreams("flaky", "drop").url))
    events = list(client(gateway).responses.create(model="m", input="hi", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None and "mid-stream" in failed.response.error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert usage_rows(gateway)[0].outcome == "interrupted"


def test_client_hanging_up_is_metered(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("slow", upstreams("slow", "slow").url))
    with httpx.stream("POST", f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi", "stream": True},
                      headers={"Authorization": f"Bearer {gateway.key}"}, timeout=30) as r:
        first = next(r.iter_lines())
    assert first == "event: response.created"
    deadline = time.monotonic() + 5
    while not usage_rows(gateway) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [row.outcome for row in usage_rows(gateway)] == ["client_closed"]


def test_length_limit_is_an_incomplete_response(gateway: Gateway, tool_upstream: ToolUpstream) -> None:
    register(gateway.db, "m", deployment("tools", tool_upstream.url))
    reply = client(gateway).responses.create(model="m", input="hi", max_output_tokens=1)
    assert reply.status == "incomplete" and reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize(("extra", "param"), [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"input": []}, "input"),
    ({"input": [{"role": "narrator", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}]},
     "input[0].content[0].image_url"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
])
def test_bad_input_is_a_400_naming_the_field(gateway: Gateway, upstreams: Callable[..., Upstream],
                                             extra: dict[str, Any], param: str) -> None:
    up = upstreams("local")
    register(gateway.db, "m", deployment("local", up.url))
    with pytest.raises(openai.BadRequestError) as bad:
        client(gateway).responses.create(**{"model": "m", "input": "hi", **extra})
    assert bad.value.body["param"] == param  # type: ignore[index]
    assert up.received == [] and usage_rows(gateway) == []


def test_missing_input_and_unknown_model(gateway: Gateway) -> None:
    r = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m"},
                   headers={"Authorization": f"Bearer {gateway.key}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    with pytest.raises(openai.NotFoundError) as nf:
        client(gateway).responses.create(model="nope", input="hi")
    assert nf.value.code == "model_not_found"
    r = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi"})
    assert r.status_code == 401


def test_concurrent_streams_keep_apart(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("slow", upstreams("slow", "slow").url))
    c = client(gateway)

    def one(_: int) -> tuple[str, str, int]:
        with c.responses.stream(model="m", input="hi") as stream:
            events = list(stream)
            final = stream.get_final_response()
        assert [e.sequence_number for e in events] == list(range(len(events)))
        return final.id, final.output_text, len(events)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert len({r[0] for r in results}) == 8
    assert {r[1:] for r in results} == {("part0 part1 part2 ", 11)}
    assert [r.outcome for r in usage_rows(gateway)] == ["ok"] * 8


def test_a_key_without_the_gateway_scope_is_refused(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("local")
    register(gateway.db, "m", deployment("local", up.url))
    other = make_key(gateway.db, make_user(gateway.db, "reader@test.example")["id"], ["read"])
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway, api_key=other).responses.create(model="m", input="hi", stream=True)
    assert up.received == []


def test_transcripts_are_kept_for_opted_in_organisations(gateway: Gateway,
                                                         upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        org = identity.create_organisation(s, OPERATOR, OrganisationCreate(name="Kept", kind="government",
                                                                           jurisdiction="IN"))
        user = identity.create_user(s, OPERATOR, UserCreate(email="kept@test.example", name="kept",
                                                            password="correct horse battery staple"))
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user.id, organisation_id=org.id,
                                                              role="member"))
        service.set_org_logging(s, OPERATOR, org.id, OrgLoggingSet(enabled=True, retention_days=7))
        org_id, user_id = org.id, user.id
    c = client(gateway, api_key=make_key(gateway.db, user_id, ["read", "gateway"], organisation_id=org_id))
    c.responses.create(model="m", instructions="Be brief.", input="a confidential question")
    with c.responses.stream(model="m", input="another one") as stream:
        stream.get_final_response()
    with gateway.db.session() as s:
        rows = s.scalars(select(Transcript).order_by(Transcript.id)).all()
    assert "Be brief." in rows[0].request and "a confidential question" in rows[0].request
    assert [r.response for r in rows] == ["hello from d", "part0 part1 part2 "]


def test_upstream_client_error_is_passed_on(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("strict", upstreams("strict", "400").url))
    with pytest.raises(openai.BadRequestError) as bad:
        client(gateway).responses.create(model="m", input="hi")
    assert "injected 400" in bad.value.message
