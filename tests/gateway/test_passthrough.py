"""Moderation and rerank passed to deployments that offer them, with the same policy and metering (#15)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from openai import OpenAI
from sqlalchemy import select

from sovstack.gateway.tables import Usage
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.upstream import Upstream


def test_moderation_through_the_official_client_is_routed_and_metered(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("guard")
    register(gateway.db, "guard", deployment("guard-1", up.url))
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    result = client.moderations.create(model="guard", input="some hate speech")
    assert result.results[0].flagged and up.received[-1]["model"] == "up-guard-1"
    with gateway.db.session() as s:
        row = s.scalars(select(Usage)).one()
        assert (row.endpoint, row.outcome, row.estimated, row.tokens_in) == ("moderations", "ok", True, 4)


def test_rerank_is_passed_through_and_metered_from_its_total(gateway: Gateway,
                                                              upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "ranker", deployment("ranker-1", upstreams("ranker").url))
    headers = {"Authorization": f"Bearer {gateway.key}"}
    r = httpx.post(f"{gateway.url}/v1/rerank", headers=headers, timeout=10, json={
        "model": "ranker", "query": "monsoon rainfall", "documents": ["cricket scores", "monsoon rainfall in Kerala"],
        "top_n": 1})
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [{"index": 1, "relevance_score": 0.2}]
    with gateway.db.session() as s:
        row = s.scalars(select(Usage)).one()
        assert (row.endpoint, row.tokens_in, row.tokens_out, row.estimated) == ("rerank", 20, 0, False)
    r = httpx.post(f"{gateway.url}/v1/rerank", headers=headers, timeout=10,
                   json={"model": "ranker", "query": "q", "documents": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "documents"


def test_a_deployment_without_the_endpoint_fails_over_to_one_with_it(gateway: Gateway,
                                                                     upstreams: Callable[..., Upstream]) -> None:
    # A chat-only server answers 404 for /v1/rerank: that deployment is skipped, the next one answers.
    chat_only = upstreams("chat-only", without=("/v1/rerank",))
    register(gateway.db, "ranker", deployment("chat-only", chat_only.url, priority=1),
             deployment("ranker-1", upstreams("ranker").url, priority=2))
    r = httpx.post(f"{gateway.url}/v1/rerank", headers={"Authorization": f"Bearer {gateway.key}"}, timeout=10,
                   json={"model": "ranker", "query": "q", "documents": ["a"]})
    assert r.status_code == 200 and r.headers["x-sovstack-deployment"] == "ranker-1"
    assert r.headers["x-sovstack-tries"] == "2"
