"""Access by tier: requests, a steward's decision, grants with expiry, revocation, and every use checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core import audit, identity, policy
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused
from sovstack.core.settings import Settings
from sovstack.core.tables import Organisation
from sovstack.data.ingest import object_path
from sovstack.data.schemas import AccessRequestCreate, RequestDecision
from sovstack.data.service import STEWARDS, get_visible, request_sla
from sovstack.data.tables import AccessGrant, AccessRequest, Dataset

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class OrgFacts:
    """An organisation as the party that will use the data (for policy decisions)."""

    name: str
    jurisdiction: str
    parent_jurisdiction: str


def _on_behalf_of(session: Session, who: Principal, asked: int | None) -> Organisation:
    org_id = asked if asked is not None else who.organisation_id
    if org_id is None:
        held = sorted(who.roles)
        if len(held) != 1:
            raise BadInput("say on behalf of which organisation (organisation_id); you belong to "
                           f"{len(held)}", field="organisation_id")
        org_id = held[0]
    if not who.has_role(org_id):
        raise Refused("you can only ask on behalf of an organisation you belong to", action="data.access.request",
                      target=f"organisation:{org_id}")
    return identity.get_organisation(session, org_id)


def policy_check(session: Session, settings: Settings, dataset: Dataset, org: Organisation, mode: str) -> None:
    """Whether ``org`` may use this dataset in ``mode``: download takes it to the org's country."""
    doc = policy.current(session, settings.home_jurisdiction)
    where = org.jurisdiction if mode == "download" else settings.home_jurisdiction
    decision = policy.decide(doc, None, "process", policy.Resource(
        classification=dataset.classification, hosting_jurisdiction=where,
        party=OrgFacts(org.name, org.jurisdiction, org.jurisdiction)))
    decision.enforce(f"data.access.{mode}", f"dataset:{dataset.name}")


def grant_mode(session: Session, settings: Settings, dataset: Dataset) -> str:
    """What a grant on this dataset allows: download (which includes the sandbox) or the sandbox only."""
    rule = policy.current(session, settings.home_jurisdiction).levels[dataset.classification]  # type: ignore[index]
    return "download" if "download" in rule.modes else "sandbox"


def request_access(session: Session, who: Principal, settings: Settings, name: str,
                   data: AccessRequestCreate) -> AccessRequest:
    dataset = get_visible(session, who, name)
    if who.user_id is None:
        raise BadInput("the local operator holds every right already; requests are for members", field="user")
    if dataset.classification == "open":
        raise BadInput(f"{name} is open data: no request is needed", field="dataset")
    org = _on_behalf_of(session, who, data.organisation_id)
    policy_check(session, settings, dataset, org, grant_mode(session, settings, dataset))
    pending = session.scalar(select(AccessRequest.id).where(
        AccessRequest.dataset_id == dataset.id, AccessRequest.user_id == who.user_id,
        AccessRequest.status == "pending"))
    if pending is not None:
        raise Conflict(f"you already have a pending request ({pending}) for {name}", field="dataset")
    req = AccessRequest(dataset_id=dataset.id, user_id=who.user_id, organisation_id=org.id, purpose=data.purpose,
                        days=data.days)
    session.add(req)
    session.flush()
    audit.record(session, actor=who.actor, action="data.access.request", target=f"dataset:{name}",
                 detail={"request": req.id, "organisation": org.name, "days": data.days})
    return req


def name_cap(dataset: Dataset) -> str:
    return f"{dataset.name}'s cap of ε {dataset.dp_epsilon_cap:g}"


def get_request(session: Session, request_id: int) -> AccessRequest:
    req = session.get(AccessRequest, request_id)
    if req is None:
        raise NotFound(f"no access request {request_id}", field="request")
    return req


def decide(session: Session, who: Principal, settings: Settings, request_id: int,
           data: RequestDecision) -> tuple[AccessRequest, AccessGrant | None]:
    """A steward of the publishing organisation approves (a grant, checked against policy now) or rejects."""
    req = get_request(session, request_id)
    dataset, target = req.dataset, f"dataset:{req.dataset.name}"
    who.require_role(dataset.publisher_id, *STEWARDS, action="data.access.decide", target=target)
    if req.status != "pending":
        raise Conflict(f"request {request_id} was already {req.status}", field="request")
    if who.user_id is not None and who.user_id == req.user_id:
        raise Refused("you cannot decide your own access request", action="data.access.decide", target=target,
                      reasons=["another steward of the publisher (or a deployment admin) decides it"])
    if data.days is not None and data.days > req.days:
        raise BadInput(f"the request asked for {req.days} days; a grant can be shorter, not longer (the requester "
                       "asks again for more)", field="days")
    req.decided_by, req.decided_at, req.reason = who.actor, utcnow(), data.reason
    grant = None
    if data.approve:
        org = identity.get_organisation(session, req.organisation_id) if req.organisation_id else None
        mode = grant_mode(session, settings, dataset)
        if org is not None:
            policy_check(session, settings, dataset, org, mode)
        if data.epsilon is not None and data.epsilon > dataset.dp_epsilon_cap:
            raise BadInput(f"a grant's privacy budget can be at most {name_cap(dataset)}", field="epsilon")
        grant = AccessGrant(dataset_id=dataset.id, user_id=req.user_id, organisation_id=req.organisation_id,
                            mode=mode, request_id=req.id, granted_by=who.actor,
                            expires_at=utcnow() + timedelta(days=data.days or req.days),
                            epsilon_budget=data.epsilon, daily_queries=data.daily_queries)
        session.add(grant)
        req.status = "approved"
        session.flush()
    else:
        req.status = "rejected"
    audit.record(session, actor=who.actor, action="data.access.decide", target=target,
                 detail={"request": req.id, "status": req.status, "grant": grant.id if grant else None,
                         "mode": grant.mode if grant else None, "reason": data.reason,
                         "epsilon": data.epsilon, "daily_queries": data.daily_queries})
    return req, grant


def revoke(session: Session, who: Principal, grant_id: int, reason: str) -> AccessGrant:
    grant = session.get(AccessGrant, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}", field="grant")
    target = f"dataset:{grant.dataset.name}"
    who.require_role(grant.dataset.publisher_id, *STEWARDS, action="data.access.revoke", target=target)
    if grant.revoked_at is None:
        grant.revoked_at, grant.revoked_reason = utcnow(), reason
        audit.record(session, actor=who.actor, action="data.access.revoke", target=target,
                     detail={"grant": grant.id, "user_id": grant.user_id, "reason": reason})
    return grant


def is_live(grant: AccessGrant) -> bool:
    return grant.revoked_at is None and grant.expires_at > utcnow()


def live_grant(session: Session, user_id: int | None, dataset_id: int, *modes: str) -> AccessGrant | None:
    """The user's grant on the dataset that is neither expired nor revoked, if any (checked at every use)."""
    if user_id is None:
        return None
    return session.scalar(select(AccessGrant).where(
        AccessGrant.dataset_id == dataset_id, AccessGrant.user_id == user_id, AccessGrant.mode.in_(modes),
        AccessGrant.revoked_at.is_(None), AccessGrant.expires_at > utcnow()).order_by(AccessGrant.expires_at.desc()))


def inbox(session: Session, who: Principal, settings: Settings) -> list[tuple[AccessRequest, bool]]:
    """Pending requests for the datasets the principal stewards, oldest first, each flagged if overdue."""
    q = select(AccessRequest).join(Dataset).where(AccessRequest.status == "pending").order_by(AccessRequest.id)
    if not who.acts_as_admin:
        orgs = [org for org, roles in who.roles.items() if roles & set(STEWARDS)]
        q = q.where(Dataset.publisher_id.in_(orgs))
    late = utcnow() - request_sla(settings)
    return [(r, r.created_at < late) for r in session.scalars(q)]


def my_requests(session: Session, who: Principal) -> list[AccessRequest]:
    return list(session.scalars(select(AccessRequest).where(AccessRequest.user_id == who.user_id)
                                .order_by(AccessRequest.id.desc())))


def my_grants(session: Session, who: Principal) -> list[AccessGrant]:
    return list(session.scalars(select(AccessGrant).where(AccessGrant.user_id == who.user_id)
                                .order_by(AccessGrant.id.desc())))


def grants_of(session: Session, who: Principal, name: str) -> list[AccessGrant]:
    """Every grant on a dataset, for its stewards."""
    dataset = get_visible(session, who, name)
    who.require_role(dataset.publisher_id, *STEWARDS, action="data.access.list", target=f"dataset:{name}")
    return list(session.scalars(select(AccessGrant).where(AccessGrant.dataset_id == dataset.id)
                                .order_by(AccessGrant.id.desc())))


def authorise_download(session: Session, who: Principal | None, settings: Settings, dataset: Dataset) -> None:
    """Raise Refused (audited by the caller's unit of work) unless ``who`` may download the dataset now."""
    doc = policy.current(session, settings.home_jurisdiction)
    grant = live_grant(session, who.user_id if who else None, dataset.id, "download")
    decision = policy.decide(doc, who, "download", policy.Resource(classification=dataset.classification,
                                                                   granted=grant is not None))
    decision.enforce("data.download", f"dataset:{dataset.name}")
    rule = doc.levels[dataset.classification]  # type: ignore[index]
    if rule.access != "public" and dataset.classification != "open" and grant is None and not (
            who and who.acts_as_admin):
        raise Refused(f"downloading {dataset.name} needs a live access grant (none, expired or revoked)",
                      action="data.download", target=f"dataset:{dataset.name}",
                      reasons=["request access; a steward decides"])
    if grant is not None and grant.organisation_id is not None:
        policy_check(session, settings, dataset, identity.get_organisation(session, grant.organisation_id),
                      "download")


def download(session: Session, who: Principal | None, settings: Settings, name: str,
             version: int | None = None) -> tuple[Path, Dataset, int]:
    """The Parquet file of a version the principal may download now; every download is audited."""
    dataset = get_visible(session, who, name)
    number = version or dataset.current_version
    found = next((v for v in dataset.versions if v.number == number), None) if number else None
    if found is None:
        raise NotFound(f"{name} has no version {number}" if number else f"{name} has no data yet", field="version")
    authorise_download(session, who, settings, dataset)
    path = object_path(settings.home / "objects", found.sha256)
    audit.record(session, actor=who.actor if who else "anonymous", action="data.download",
                 target=f"dataset:{name}", detail={"version": number, "sha256": found.sha256})
    return path, dataset, number


PREVIEW_ROWS = 20


def preview(session: Session, who: Principal | None, settings: Settings, dataset: Dataset) -> tuple[list[str], list[
        list[Any]]] | None:
    """The first rows of the current version, for whoever may download it now; None otherwise (no audit:
    a preview is shown to those who could take the whole file anyway)."""
    if dataset.classification == "sensitive" or not dataset.current_version:
        return None
    try:
        authorise_download(session, who, settings, dataset)
    except Refused:
        return None
    version = next(v for v in dataset.versions if v.number == dataset.current_version)
    path = object_path(settings.home / "objects", version.sha256)
    import duckdb  # loaded at first use: a server process serving other modules need not carry DuckDB

    con = duckdb.connect(":memory:", config={"memory_limit": "256MB", "threads": 1})
    try:
        cursor = con.execute(f"SELECT * FROM read_parquet('{path}') LIMIT {PREVIEW_ROWS}")
        columns = [d[0] for d in cursor.description]
        return columns, [[_plain(v) for v in row] for row in cursor.fetchall()]
    finally:
        con.close()


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)
