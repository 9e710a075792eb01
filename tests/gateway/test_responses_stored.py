"""Stored responses: ``previous_response_id`` and ``/v1/responses/{id}``, with the official client against real
servers on 127.0.0.1. Tenancy and classification are the attack surface: each has its own test."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select, update

from sovstack.cli import run
from sovstack.core import identity
from sovstack.core.base import utcnow
from sovstack.core.context import unit_of_work
from sovstack.core.schemas import MembershipCreate, OrganisationCreate
from sovstack.core.settings import Settings
from sovstack.core.tables import AuditEvent
from sovstack.gateway import service, stored
from sovstack.gateway.schemas import KeyPolicySet, OrgResponsesSet
from sovstack.gateway.tables import StoredResponse, Usage
from tests.conftest import free_port, make_key, make_user
from tests.gateway.conftest import OPERATOR, Gateway, deployment, register
from tests.gateway.test_responses import WEATHER, ToolUpstream
from tests.gateway.upstream import Upstream, serve

SECRET = "the confidential budget figure is 4711"


@dataclass
class Org:
    id: int
    name: str
    key: str  # a member's key made for the organisation
    user_id: int


def _org(gw: Gateway, name: str, email: str, *, keep_days: int | None = 30) -> Org:
    """An organisation with one member and a key of theirs made for it; it keeps responses unless told not to."""
    user = make_user(gw.db, email)
    with gw.db.session() as s, unit_of_work(s, OPERATOR):
        org = identity.create_organisation(s, OPERATOR, OrganisationCreate(name=name, kind="government",
                                                                           jurisdiction="IN"))
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user["id"], organisation_id=org.id,
                                                              role="member"))
        if keep_days:
            stored.set_org_responses(s, OPERATOR, org.id, OrgResponsesSet(enabled=True, retention_days=keep_days))
        org_id = org.id
    return Org(org_id, name, make_key(gw.db, user["id"], ["read", "gateway"], organisation_id=org_id), user["id"])


def _join(gw: Gateway, org: Org, email: str) -> str:
    """Another member of ``org``, and their key for it."""
    user = make_user(gw.db, email)
    with gw.db.session() as s, unit_of_work(s, OPERATOR):
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user["id"], organisation_id=org.id,
                                                              role="member"))
    return make_key(gw.db, user["id"], ["read", "gateway"], organisation_id=org.id)


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def kept(gw: Gateway) -> list[StoredResponse]:
    with gw.db.session() as s:
        return list(s.scalars(select(StoredResponse).order_by(StoredResponse.created_at)))


@pytest.fixture
def up(gateway: Gateway, upstreams: Callable[..., Upstream]) -> Upstream:
    local = upstreams("local")
    register(gateway.db, "m", deployment("local", local.url))
    return local


@pytest.fixture
def org(gateway: Gateway) -> Org:
    return _org(gateway, "Ministry", "ravi@test.example")


def test_previous_response_id_carries_the_earlier_turns(gateway: Gateway, up: Upstream, org: Org) -> None:
    c = client(gateway, org.key)
    first = c.responses.create(model="m", instructions="Answer in Marathi.", input=SECRET)
    assert first.store is True and first.previous_response_id is None
    second = c.responses.create(model="m", previous_response_id=first.id, input="And the second?")
    assert second.store is True and second.previous_response_id == first.id
    # The earlier input and output go before this turn's; the earlier instructions do not (OpenAI's semantics).
    assert up.received[-1]["messages"] == [
        {"role": "user", "content": SECRET}, {"role": "assistant", "content": "hello from local"},
        {"role": "user", "content": "And the second?"}]
    third = c.responses.create(model="m", previous_response_id=second.id, instructions="Be brief.",
                               input=[{"role": "user", "content": [{"type": "input_text", "text": "A third?"}]}])
    assert up.received[-1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": SECRET}, {"role": "assistant", "content": "hello from local"},
        {"role": "user", "content": "And the second?"}, {"role": "assistant", "content": "hello from local"},
        {"role": "user", "content": "A third?"}]

    again = c.responses.retrieve(third.id)
    assert again.model_dump() == third.model_dump()
    items = c.responses.input_items.list(third.id, order="asc")
    texts = [(i.type, getattr(i, "role", None), i.content[0].text) for i in items.data]  # type: ignore[union-attr]
    assert texts == [("message", "user", SECRET), ("message", "assistant", "hello from local"),
                     ("message", "user", "And the second?"), ("message", "assistant", "hello from local"),
                     ("message", "user", "A third?")]
    assert items.data[1].id == first.output[0].id and all(i.id for i in items.data)
    newest = c.responses.input_items.list(third.id, limit=2)  # OpenAI's default order: newest first
    assert [i.id for i in newest.data] == [i.id for i in items.data][::-1][:2] and newest.has_more
    assert (newest.first_id, newest.last_id) == (newest.data[0].id, newest.data[1].id)
    rest = c.responses.input_items.list(third.id, limit=2, after=newest.last_id)
    assert [i.id for i in rest.data] == [i.id for i in items.data][::-1][2:4] and rest.has_more
    assert [i.id for i in c.responses.input_items.list(third.id).data] == [i.id for i in items.data][::-1]

    rows = kept(gateway)
    assert [(r.id, r.previous_response_id, r.organisation_id, r.user_id, r.model, r.classification, r.status)
            for r in rows] == [(first.id, None, org.id, org.user_id, "m", "open", "completed"),
                               (second.id, first.id, org.id, org.user_id, "m", "open", "completed"),
                               (third.id, second.id, org.id, org.user_id, "m", "open", "completed")]
    assert rows[0].key_prefix == org.key.split("_")[0] and rows[0].usage["total_tokens"] == 18
    assert timedelta(days=29) < rows[0].expires_at - utcnow() <= timedelta(days=30)
    # Sealed at rest: the prompt and the answer are not in the database as text.
    assert all(SECRET not in r.input_items + r.response and "hello from" not in r.response for r in rows)
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).all()
        assert [u.endpoint for u in usage] == ["responses"] * 3
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.responses")
                          .order_by(AuditEvent.seq.desc())).first()
        assert event is not None and json.loads(event.detail)["response_id"] == third.id
        assert all(SECRET not in e.detail for e in s.scalars(select(AuditEvent)))


@pytest.fixture
def tool_upstream() -> Iterator[ToolUpstream]:
    tools = ToolUpstream("tools")
    port = free_port()
    tools.server = serve(tools.app(), port)
    tools.url = f"http://127.0.0.1:{port}/v1"
    yield tools
    tools.server.should_exit = True


def test_a_function_call_is_answered_by_previous_response_id(gateway: Gateway, tool_upstream: ToolUpstream,
                                                             org: Org) -> None:
    """How the Agents SDK carries on: only the function's output is sent, the call is the kept response's."""
    register(gateway.db, "m", deployment("tools", tool_upstream.url))
    c = client(gateway, org.key)
    first = c.responses.create(model="m", input="Weather in Pune?", tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call"
    second = c.responses.create(model="m", previous_response_id=first.id, tools=[WEATHER],
                                input=[{"type": "function_call_output", "call_id": call.call_id, "output": "31°C"}])
    assert second.output_text == "hello from tools"
    assert tool_upstream.received[-1]["messages"] == [
        {"role": "user", "content": "Weather in Pune?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_42", "type": "function", "function": {"name": "get_weather", "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": "call_42", "content": "31°C"}]
    types = [i.type for i in c.responses.input_items.list(second.id, order="asc").data]
    assert types == ["message", "function_call", "function_call_output"]


def test_only_its_person_in_its_organisation_can_read_or_continue_a_response(
        gateway: Gateway, up: Upstream, org: Org) -> None:
    mine = client(gateway, org.key).responses.create(model="m", input=SECRET)
    other_org = _org(gateway, "Elsewhere", "eve@test.example")
    colleague = _join(gateway, org, "colleague@test.example")
    # The same person, calling for another organisation they belong to, is in that organisation's room.
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=org.user_id, organisation_id=other_org.id,
                                                              role="member"))
    same_person_elsewhere = make_key(gateway.db, org.user_id, ["read", "gateway"], organisation_id=other_org.id)
    nowhere = "resp_" + "0" * 48
    calls = len(up.received)
    for key in (other_org.key, colleague, same_person_elsewhere):
        c = client(gateway, key)
        for attempt in (c.responses.retrieve, c.responses.input_items.list, c.responses.delete):
            with pytest.raises(openai.NotFoundError) as nf:
                attempt(mine.id)
            assert SECRET not in str(nf.value.body)
        with pytest.raises(openai.NotFoundError) as nf:
            c.responses.create(model="m", previous_response_id=mine.id, input="go on")
        assert nf.value.body["param"] == "previous_response_id"  # type: ignore[index]
        # A 404 says no more about someone else's response than about one that never was.
        with pytest.raises(openai.NotFoundError) as never:
            c.responses.create(model="m", previous_response_id=nowhere, input="go on")
        assert str(nf.value.body["message"]).replace(mine.id, "X") == str(  # type: ignore[index]
            never.value.body["message"]).replace(nowhere, "X")  # type: ignore[index]
    assert len(up.received) == calls  # nothing reached a model
    # Any key of its person for its organisation may: a new key is still them.
    again = client(gateway, make_key(gateway.db, org.user_id, ["gateway"], organisation_id=org.id))
    assert again.responses.retrieve(mine.id).id == mine.id
    assert again.responses.create(model="m", previous_response_id=mine.id, input="go on").store is True
    assert len(kept(gateway)) == 2
    # A key without the gateway scope reads nothing, even its own.
    reader = make_key(gateway.db, org.user_id, ["read"], organisation_id=org.id)
    r = httpx.get(f"{gateway.url}/v1/responses/{mine.id}", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
    assert httpx.get(f"{gateway.url}/v1/responses/{mine.id}").status_code == 401


def test_a_continued_conversation_never_lowers_its_classification(gateway: Gateway,
                                                                  upstreams: Callable[..., Upstream],
                                                                  org: Org) -> None:
    foreign, domestic = upstreams("foreign"), upstreams("domestic")
    register(gateway.db, "m",
             deployment("frontier-us-parent", foreign.url, operator="Hyper India", developer="Frontier Labs",
                        priority=1, open_weights=False, licence="proprietary"),
             deployment("desi", domestic.url, priority=2))
    register(gateway.db, "only-foreign", deployment("frontier-only", foreign.url, operator="Hyper India"))
    # One person, two keys for the organisation: one held to sensitive, one that would be routed as open.
    strict_key = make_key(gateway.db, org.user_id, ["gateway"], organisation_id=org.id)
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_key_policy(s, OPERATOR, strict_key.split("_")[0], KeyPolicySet(
            default_classification="sensitive", floor_classification="sensitive"))
    raw = client(gateway, strict_key).responses.with_raw_response.create(model="m", input=SECRET)
    assert raw.headers["x-sovstack-deployment"] == "desi" and raw.headers["x-sovstack-classification"] == "sensitive"
    secret = raw.parse()
    weak = client(gateway, org.key)
    assert weak.responses.with_raw_response.create(model="m", input="hi").headers[
        "x-sovstack-deployment"] == "frontier-us-parent"  # the weak key alone goes abroad
    foreign_calls = len(foreign.received)

    for asked in ({}, {"X-Sovstack-Classification": "open"}):
        raw = weak.responses.with_raw_response.create(model="m", previous_response_id=secret.id, input="more?",
                                                      extra_headers=asked)
        assert raw.headers["x-sovstack-deployment"] == "desi"
        assert raw.headers["x-sovstack-classification"] == "sensitive"
    continued = raw.parse()
    # Its continuation is kept as sensitive too: the floor holds down the whole chain.
    raw = weak.responses.with_raw_response.create(model="m", previous_response_id=continued.id, input="and?")
    assert raw.headers["x-sovstack-deployment"] == "desi"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        weak.responses.create(model="only-foreign", previous_response_id=continued.id, input="abroad?")
    assert "sensitive" in refused.value.message
    assert len(foreign.received) == foreign_calls
    assert all(SECRET not in json.dumps(body) for body in foreign.received)
    assert [r.classification for r in kept(gateway)] == ["sensitive", "open", "sensitive", "sensitive", "sensitive"]


def test_store_false_keeps_nothing(gateway: Gateway, up: Upstream, org: Org) -> None:
    c = client(gateway, org.key)
    reply = c.responses.create(model="m", input=SECRET, store=False)
    assert reply.store is False and kept(gateway) == []
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="m", previous_response_id=reply.id, input="go on")
    with c.responses.stream(model="m", input="hi", store=False) as stream:
        assert stream.get_final_response().store is False
    assert kept(gateway) == []
    r = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi", "store": "yes"},
                   headers={"Authorization": f"Bearer {org.key}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "store"


def test_an_organisation_that_keeps_no_responses(gateway: Gateway, up: Upstream) -> None:
    org = _org(gateway, "Default Ministry", "asha@test.example", keep_days=None)
    c = client(gateway, org.key)
    reply = c.responses.create(model="m", input=SECRET, store=True)
    assert reply.store is False and kept(gateway) == []
    with pytest.raises(openai.BadRequestError) as bad:
        c.responses.create(model="m", previous_response_id=reply.id, input="go on")
    assert bad.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert f"organisation {org.id} does not keep responses" in bad.value.message
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(reply.id)
    # A person in no organisation has none to keep them for.
    with pytest.raises(openai.BadRequestError) as bad:
        client(gateway, gateway.key).responses.create(model="m", previous_response_id=reply.id, input="go on")
    assert "previous_response_id" in bad.value.message and "for none" in bad.value.message
    assert len(up.received) == 1


def test_turned_off_while_answering_keeps_nothing(gateway: Gateway, upstreams: Callable[..., Upstream],
                                                 org: Org) -> None:
    """The organisation's choice holds even for a call admitted before it changed its mind."""
    held = upstreams("held", "hold")
    register(gateway.db, "m", deployment("held", held.url))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client(gateway, org.key).responses.create, model="m", input=SECRET)
        deadline = time.monotonic() + 10
        while not held.received and time.monotonic() < deadline:
            time.sleep(0.01)
        with gateway.db.session() as s, unit_of_work(s, OPERATOR):
            stored.set_org_responses(s, OPERATOR, org.id, OrgResponsesSet(enabled=False))
        held.gate.set()
        reply = pending.result(timeout=30)
    assert reply.output_text == "hello from held" and reply.store is False and kept(gateway) == []


def test_expired_responses_are_gone_and_purged(gateway: Gateway, up: Upstream, org: Org) -> None:
    c = client(gateway, org.key)
    old = c.responses.create(model="m", input=SECRET)
    with gateway.db.session() as s:
        s.execute(update(StoredResponse).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(old.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.input_items.list(old.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="m", previous_response_id=old.id, input="go on")
    new = c.responses.create(model="m", input="hi")
    assert [r.id for r in kept(gateway)] == [new.id]  # expired rows are deleted as new ones are written


def test_a_deleted_response_is_gone_and_its_continuation_stays(gateway: Gateway, up: Upstream, org: Org) -> None:
    c = client(gateway, org.key)
    first = c.responses.create(model="m", input=SECRET)
    second = c.responses.create(model="m", previous_response_id=first.id, input="go on")
    r = httpx.delete(f"{gateway.url}/v1/responses/{first.id}", headers={"Authorization": f"Bearer {org.key}"})
    assert r.status_code == 200 and r.json() == {"id": first.id, "object": "response", "deleted": True}
    for gone in (lambda: c.responses.retrieve(first.id), lambda: c.responses.delete(first.id),
                 lambda: c.responses.create(model="m", previous_response_id=first.id, input="go on")):
        with pytest.raises(openai.NotFoundError):
            gone()
    # Each kept response holds its whole context: the one that continued the deleted one still works.
    third = c.responses.create(model="m", previous_response_id=second.id, input="still there?")
    assert up.received[-1]["messages"][0] == {"role": "user", "content": SECRET}
    c.responses.delete(third.id)
    assert [r.id for r in kept(gateway)] == [second.id]
    with gateway.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.responses.delete")
                           .order_by(AuditEvent.seq)).all()
        assert [e.target for e in events] == [f"response:{first.id}", f"response:{third.id}"]
        assert events[0].actor.startswith("ravi@test.example") and SECRET not in events[0].detail


def test_a_stream_is_kept_once_completed(gateway: Gateway, upstreams: Callable[..., Upstream], org: Org) -> None:
    good, flaky = upstreams("good"), upstreams("flaky", "drop")
    register(gateway.db, "m", deployment("good", good.url))
    register(gateway.db, "cut", deployment("flaky", flaky.url))
    c = client(gateway, org.key)
    with c.responses.stream(model="m", input=SECRET) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.store is True and events[0].response.store is True  # type: ignore[union-attr]
    assert c.responses.retrieve(final.id).output_text == "part0 part1 part2 "
    with c.responses.stream(model="m", previous_response_id=final.id, input="go on") as stream:
        second = stream.get_final_response()
    assert second.previous_response_id == final.id
    assert good.received[-1]["messages"][:2] == [{"role": "user", "content": SECRET},
                                                 {"role": "assistant", "content": "part0 part1 part2 "}]
    # A stream cut short is not kept: its answer is not one to continue from.
    cut = list(c.responses.create(model="cut", input="hi", stream=True))
    assert cut[-1].type == "response.failed" and cut[-1].response.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(cut[-1].response.id)
    assert [r.id for r in kept(gateway)] == [final.id, second.id]


def test_organisation_admins_turn_it_on_and_off(gateway: Gateway, up: Upstream, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    org = _org(gateway, "Opted In Ministry", "meera@test.example", keep_days=None)
    home = ["--home", str(gateway.app.state.settings.home)]
    assert run([*home, "gateway", "stored-responses", org.name, "--enable", "--retention-days", "10"]) == 0
    assert "responses kept 10 days" in capsys.readouterr().out
    assert run([*home, "gateway", "limits", org.name, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["responses_kept"], shown["responses_retention_days"]) == (True, 10)
    c = client(gateway, org.key)
    old, new = c.responses.create(model="m", input="old"), c.responses.create(model="m", input="new")
    with gateway.db.session() as s:  # one made nine days ago, when the retention was longer
        s.execute(update(StoredResponse).where(StoredResponse.id == old.id).values(
            created_at=utcnow() - timedelta(days=9), expires_at=utcnow() + timedelta(days=20)))
        s.commit()
    # A shorter retention applies at once to what is kept.
    assert run([*home, "gateway", "stored-responses", org.name, "--enable", "--retention-days", "5"]) == 0
    assert "1 kept responses forgotten" in capsys.readouterr().out
    assert [r.id for r in kept(gateway)] == [new.id]
    assert kept(gateway)[0].expires_at - utcnow() <= timedelta(days=5)
    # Members may not decide it; turning it off forgets every kept response.
    url = f"{gateway.url}/api/v1/gateway/organisations/{org.id}/responses"
    member = make_key(gateway.db, org.user_id, ["read", "write", "gateway"], organisation_id=org.id)
    r = httpx.put(url, json={"enabled": False}, headers={"Authorization": f"Bearer {member}"})
    assert r.status_code == 403 and len(kept(gateway)) == 1
    r = httpx.put(url, json={"enabled": False}, headers={"Authorization": f"Bearer {gateway.admin_key}"})
    assert r.status_code == 200 and r.json() == {"enabled": False, "retention_days": 30, "forgotten": 1}
    assert kept(gateway) == []
    with pytest.raises(openai.BadRequestError):
        c.responses.create(model="m", previous_response_id=new.id, input="go on")
    with gateway.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.stored_responses")
                           .order_by(AuditEvent.seq)).all()
        assert [(e.outcome, json.loads(e.detail).get("forgotten")) for e in events] == [
            ("ok", 0), ("ok", 1), ("refused", None), ("ok", 1)]


def test_the_migration_adds_and_removes_the_tables(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from sovstack.core.db import Database
    from tests.conftest import SECRET as SUITE_SECRET

    db = Database(Settings(home=tmp_path, environment="test", secret_key=SUITE_SECRET,
                           database_url=f"sqlite:///{tmp_path}/old.db"))
    command.upgrade(db._alembic(), "0011_gateway_spend")
    assert "gateway_responses" not in inspect(db.engine).get_table_names()
    command.upgrade(db._alembic(), "head")
    tables = inspect(db.engine).get_table_names()
    assert {"gateway_responses", "gateway_org_responses"} <= set(tables)
    assert {i["name"] for i in inspect(db.engine).get_indexes("gateway_responses")} == {
        "ix_gateway_responses_organisation_id", "ix_gateway_responses_expires_at"}
    command.downgrade(db._alembic(), "0011_gateway_spend")
    tables = inspect(db.engine).get_table_names()
    assert "gateway_responses" not in tables and "gateway_org_responses" not in tables
    db.dispose()
