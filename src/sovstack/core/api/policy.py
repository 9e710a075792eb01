"""HTTP API of the deployment policy and its decisions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sovstack.core import parties, policy
from sovstack.core.api.deps import PrincipalDep, SessionDep, SettingsDep
from sovstack.core.base import rfc3339
from sovstack.core.context import unit_of_work
from sovstack.core.schemas import DecisionPublic, PolicyCheck

router = APIRouter(prefix="/api/v1/policy", tags=["policy"])


@router.get("")
def get_policy(session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> policy.PolicyDocument:
    return policy.current(session, settings.home_jurisdiction)


@router.put("")
def put_policy(body: policy.PolicyDocument, session: SessionDep, who: PrincipalDep) -> policy.PolicyDocument:
    with unit_of_work(session, who):
        policy.save(session, who, body)
    return body


@router.get("/history")
def policy_history(session: SessionDep, who: PrincipalDep) -> list[dict[str, Any]]:
    return [{"id": v.id, "created_by": v.created_by, "created_at": rfc3339(v.created_at), "body": v.body}
            for v in policy.history(session)]


@router.post("/check")
def check(body: PolicyCheck, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> DecisionPublic:
    """Explain what the policy in force decides; changes nothing."""
    party = parties.get_party(session, body.party) if body.party else None
    doc = policy.current(session, settings.home_jurisdiction)
    decision = policy.decide(doc, who, body.action, policy.Resource(
        classification=body.classification, party=party, hosting_jurisdiction=body.hosting_jurisdiction,
        granted=body.granted))
    return DecisionPublic(allowed=decision.allowed, reasons=decision.reasons)
