"""Policy decisions with reasons, and changing the policy through the API."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from sovstack.core import policy
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, Refused


@dataclass
class P:
    name: str
    jurisdiction: str
    parent_jurisdiction: str


DOMESTIC = P("Domestic Cloud", "IN", "IN")
SUBSIDIARY = P("Hyperscaler India", "IN", "US")
FOREIGN_EU = P("Euro Cloud", "FR", "FR")
MEMBER = Principal(user_id=5, email="m@test.example", is_admin=False)
DOC = policy.default_policy("IN")


def decide(action: policy.Action, level: str, party: P | None = None, **kw: object) -> policy.Decision:
    return policy.decide(DOC, MEMBER, action, policy.Resource(classification=level, party=party, **kw))  # type: ignore[arg-type]


def test_sensitive_processing_stays_at_home_with_domestic_operators() -> None:
    assert decide("process", "sensitive", DOMESTIC).allowed
    refused = decide("process", "sensitive", SUBSIDIARY)
    assert not refused.allowed
    joined = " ".join(refused.reasons)
    assert "ultimate parent is in US" in joined and "18 U.S.C. §2713" in joined
    abroad = decide("process", "sensitive", FOREIGN_EU)
    assert not abroad.allowed and any("hosted in FR" in r for r in abroad.reasons)


def test_hosting_jurisdiction_can_differ_from_operator() -> None:
    refused = decide("process", "restricted", DOMESTIC, hosting_jurisdiction="SG")
    assert not refused.allowed and "hosted in SG" in refused.reasons[0]
    assert decide("process", "open", SUBSIDIARY, hosting_jurisdiction="US").allowed


def test_blocs_expand_to_members() -> None:
    doc = policy.default_policy("FR")
    doc.levels["restricted"].hosting_jurisdictions = ["EU"]
    assert policy.decide(doc, MEMBER, "process", policy.Resource("restricted", party=P("DE Cloud", "DE", "DE"))).allowed
    assert not policy.decide(doc, MEMBER, "process", policy.Resource("restricted", party=P("UK", "GB", "GB"))).allowed


def test_access_modes_and_grants() -> None:
    assert decide("download", "open").allowed
    refused = decide("download", "sensitive", granted=True)
    assert not refused.allowed and "only by sandbox" in refused.reasons[0]
    no_grant = decide("sandbox", "sensitive")
    assert not no_grant.allowed and "needs an access grant" in no_grant.reasons[0]
    assert decide("sandbox", "sensitive", granted=True).allowed
    anonymous = policy.decide(DOC, None, "download", policy.Resource("restricted"))
    assert not anonymous.allowed and "signed-in members" in anonymous.reasons[0]


def test_unknown_operator_cannot_process_sensitive_data() -> None:
    d = decide("process", "sensitive", None, hosting_jurisdiction="IN")
    assert not d.allowed and "operating party is unknown" in d.reasons[0]


def test_enforce_raises_refused_with_reasons() -> None:
    with pytest.raises(Refused) as info:
        decide("process", "sensitive", SUBSIDIARY).enforce("gateway.route", "model:x")
    assert info.value.reasons and info.value.action == "gateway.route"


def test_ranks_are_ordered() -> None:
    assert policy.rank("open") < policy.rank("restricted") < policy.rank("sensitive")


def test_document_validation() -> None:
    body = DOC.model_dump()
    body["levels"].pop("open")
    with pytest.raises(ValueError, match="missing"):
        policy.PolicyDocument.model_validate(body)
    body = DOC.model_dump()
    body["levels"]["open"]["hosting_jurisdictions"] = ["Atlantis"]
    with pytest.raises((ValueError, BadInput)):
        policy.PolicyDocument.model_validate(body)


def test_policy_api_roundtrip_and_bad_document_keeps_old(admin_client: TestClient) -> None:
    current = admin_client.get("/api/v1/policy").json()
    assert current["home_jurisdiction"] == "IN"
    new = {**current, "home_jurisdiction": "FR"}
    new["levels"]["sensitive"]["hosting_jurisdictions"] = ["EU"]
    assert admin_client.put("/api/v1/policy", json=new).status_code == 200
    bad = {**new, "levels": {"open": new["levels"]["open"]}}
    r = admin_client.put("/api/v1/policy", json=bad)
    assert r.status_code == 422 and "missing" in r.json()["error"]["message"]
    r = admin_client.put("/api/v1/policy", json={**new, "home_jurisdiction": "XX"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "home_jurisdiction"
    assert admin_client.get("/api/v1/policy").json()["levels"]["sensitive"]["hosting_jurisdictions"] == ["EU"]
    assert len(admin_client.get("/api/v1/policy/history").json()) == 1


def test_policy_check_endpoint_explains(admin_client: TestClient) -> None:
    admin_client.post("/api/v1/parties", json={"name": "Hyperscaler India", "kinds": ["compute_provider"],
                                               "jurisdiction": "IN", "ultimate_parent": "Hyper Inc",
                                               "parent_jurisdiction": "US"})
    r = admin_client.post("/api/v1/policy/check", json={"classification": "sensitive",
                                                        "party": "Hyperscaler India"})
    assert r.json()["allowed"] is False and any("CLOUD Act" in x for x in r.json()["reasons"])
    r = admin_client.post("/api/v1/policy/check", json={"classification": "secret", "party": "x"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "classification"
    r = admin_client.post("/api/v1/policy/check", json={"classification": "open", "party": "Nobody"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "party"


def test_model_origin_weights_and_licence_conditions() -> None:
    doc = policy.default_policy("IN")
    rule = doc.levels["sensitive"]
    rule.developer_jurisdictions, rule.require_open_weights, rule.licences = ["IN", "EU"], True, ["Apache-2.0"]
    frontier = P("Frontier Labs", "US", "US")
    refused = policy.decide(doc, MEMBER, "process", policy.Resource(
        "sensitive", party=DOMESTIC, developer=frontier, open_weights=False, licence="proprietary"))
    joined = " ".join(refused.reasons)
    assert not refused.allowed and "developer is in IN, EU" in joined
    assert "open-weight" in joined and "licensed Apache-2.0" in joined
    french = P("Mistral-like SAS", "FR", "FR")
    assert policy.decide(doc, MEMBER, "process", policy.Resource(
        "sensitive", party=DOMESTIC, developer=french, open_weights=True, licence="Apache-2.0")).allowed
