"""The gateway's catalogue: logical models, deployments, cut-offs, key and organisation policies, budgets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from sovstack.core import audit, identity, parties
from sovstack.core.base import utcnow
from sovstack.core.context import ORG_ROLES, Principal
from sovstack.core.errors import BadInput, Conflict, NotFound
from sovstack.core.policy import rank
from sovstack.core.settings import Settings
from sovstack.core.tables import ApiKey
from sovstack.gateway import bedrock
from sovstack.gateway.cache import AnswerCache
from sovstack.gateway.circuits import CLOSED, CircuitView, reported
from sovstack.gateway.facts import bump
from sovstack.gateway.routing import Breakers
from sovstack.gateway.schemas import (
    BudgetSet,
    Catalogue,
    CutoffRequest,
    DeploymentCreate,
    DeploymentPublic,
    KeyPolicyPublic,
    KeyPolicySet,
    LanguageTag,
    ModelCreate,
    ModelPublic,
    OrgCacheSet,
    OrgLoggingSet,
    OrgPolicyPublic,
    OrgPolicySet,
)
from sovstack.gateway.secrets import seal, unseal
from sovstack.gateway.tables import (
    CircuitReport,
    Deployment,
    GatewayModel,
    KeyPolicy,
    OrgBudget,
    OrgCache,
    OrgLogging,
    OrgPolicy,
    OrgResponses,
    Transcript,
)


def list_models(session: Session) -> list[GatewayModel]:
    q = select(GatewayModel).options(selectinload(GatewayModel.deployments)).order_by(GatewayModel.name)
    return list(session.scalars(q))


def get_model(session: Session, name: str) -> GatewayModel:
    model = session.scalar(select(GatewayModel).options(selectinload(GatewayModel.deployments))
                           .where(GatewayModel.name == name))
    if model is None:
        raise NotFound(f"no model {name!r}", field="model")
    return model


def servable(model: GatewayModel) -> bool:
    """Whether /v1/models lists the model: enabled, with a deployment neither withdrawn nor disabled."""
    return model.enabled and any(d.enabled and not d.withdrawn for d in model.deployments)


def model_public(model: GatewayModel) -> ModelPublic:
    return ModelPublic(id=model.id, name=model.name, description=model.description,
                       language_routing=model.language_routing, enabled=model.enabled,
                       deployments=[d.name for d in model.deployments],
                       routing=model.routing, fallbacks=list(model.fallbacks or []))


def create_model(session: Session, who: Principal, data: ModelCreate, *, check_fallbacks: bool = True) -> GatewayModel:
    who.require_admin("gateway.model.create", data.name)
    if session.scalar(select(GatewayModel).where(GatewayModel.name == data.name)) is not None:
        raise Conflict(f"model {data.name!r} already exists", field="name")
    model = GatewayModel(**data.model_dump())
    session.add(model)
    session.flush()
    if check_fallbacks:
        _check_fallbacks(session, model)
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.model.create", target=f"model:{data.name}",
                 detail=data.model_dump())
    return model


def _check_fallbacks(session: Session, model: GatewayModel) -> None:
    for name in model.fallbacks or []:
        if name == model.name:
            raise BadInput(f"model {model.name!r} cannot be its own fallback", field="fallbacks")
        if session.scalar(select(GatewayModel.id).where(GatewayModel.name == name)) is None:
            raise BadInput(f"model {model.name!r} names an unknown fallback {name!r}: create it first",
                           field="fallbacks")


def list_deployments(session: Session, model: str | None = None) -> list[Deployment]:
    q = select(Deployment).options(selectinload(Deployment.model)).order_by(Deployment.priority, Deployment.name)
    if model:
        q = q.join(GatewayModel).where(GatewayModel.name == model)
    return list(session.scalars(q))


def get_deployment(session: Session, name: str) -> Deployment:
    dep = session.scalar(select(Deployment).where(Deployment.name == name))
    if dep is None:
        raise NotFound(f"no deployment {name!r}", field="deployment")
    return dep


def _values(session: Session, settings: Settings, data: DeploymentCreate) -> dict[str, Any]:
    values = data.model_dump(exclude={"name", "model", "api_key", "operator", "developer"})
    values["languages"] = [tag.model_dump() for tag in data.languages]
    try:
        values["operator_id"] = parties.get_party(session, data.operator).id
    except NotFound as exc:
        raise BadInput(f"unknown operator party {data.operator!r}: register it first", field="operator") from exc
    try:
        values["developer_id"] = parties.get_party(session, data.developer).id
    except NotFound as exc:
        raise BadInput(f"unknown developer party {data.developer!r}: register it first",
                       field="developer") from exc
    return values


def _check_upstream_key(settings: Settings, data: DeploymentCreate, sealed: str = "") -> None:
    """A Bedrock deployment's key (the one given, else the one kept) must be AWS credentials it can sign with,
    for a region it can name: said now, to the admin, rather than as failed calls later."""
    if data.backend != "bedrock":
        return
    try:
        bedrock.signing(data.api_key if data.api_key is not None else unseal(settings, sealed), data.base_url)
    except ValueError as exc:
        raise BadInput(str(exc), field="api_key") from exc


def create_deployment(session: Session, who: Principal, settings: Settings, data: DeploymentCreate) -> Deployment:
    who.require_admin("gateway.deployment.create", data.name)
    model = get_model(session, data.model)
    if session.scalar(select(Deployment).where(Deployment.name == data.name)) is not None:
        raise Conflict(f"deployment {data.name!r} already exists", field="name")
    _check_upstream_key(settings, data)
    dep = Deployment(name=data.name, model_id=model.id, api_key_encrypted=seal(settings, data.api_key or ""),
                     **_values(session, settings, data))
    session.add(dep)
    session.flush()
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.deployment.create", target=f"deployment:{data.name}",
                 detail=_redacted(data))
    return dep


def _redacted(data: DeploymentCreate) -> dict[str, Any]:
    detail = data.model_dump(mode="json", exclude={"api_key"})
    detail["api_key"] = "(set)" if data.api_key else None
    return detail


def apply_catalogue(session: Session, who: Principal, settings: Settings, catalogue: Catalogue) -> dict[str, list[str]]:
    """Make the catalogue match the file: create what is missing, update what differs; idempotent."""
    who.require_admin("gateway.apply", "catalogue")
    result: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    for entry in catalogue.models:
        model = session.scalar(select(GatewayModel).where(GatewayModel.name == entry.name))
        if model is None:
            create_model(session, who, ModelCreate(**entry.model_dump(exclude={"deployments"})), check_fallbacks=False)
            result["created"].append(f"model:{entry.name}")
        elif (model.description, model.language_routing, model.routing, list(model.fallbacks or [])) != (
                entry.description, entry.language_routing, entry.routing, entry.fallbacks):
            model.description, model.language_routing = entry.description, entry.language_routing
            model.routing, model.fallbacks = entry.routing, list(entry.fallbacks)
            result["updated"].append(f"model:{entry.name}")
        else:
            result["unchanged"].append(f"model:{entry.name}")
        for dep_entry in entry.deployments:
            data = DeploymentCreate(**{**dep_entry.model_dump(), "model": entry.name})
            result[_apply_deployment(session, who, settings, data)].append(f"deployment:{data.name}")
    for entry in catalogue.models:  # after every model of the file exists: a fallback may name a later one
        _check_fallbacks(session, get_model(session, entry.name))
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.apply", target="catalogue",
                 detail={k: v for k, v in result.items() if k != "unchanged"})
    return result


def _apply_deployment(session: Session, who: Principal, settings: Settings, data: DeploymentCreate) -> str:
    dep = session.scalar(select(Deployment).where(Deployment.name == data.name))
    if dep is None:
        create_deployment(session, who, settings, data)
        return "created"
    _check_upstream_key(settings, data, dep.api_key_encrypted)
    values = _values(session, settings, data)
    values["model_id"] = get_model(session, data.model).id
    changed = {k: v for k, v in values.items() if getattr(dep, k) != v}
    if data.api_key is not None and unseal(settings, dep.api_key_encrypted) != data.api_key:
        dep.api_key_encrypted = seal(settings, data.api_key)
        changed["api_key"] = "(changed)"
    if not changed:
        return "unchanged"
    for key, value in changed.items():
        if key != "api_key":
            setattr(dep, key, value)
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.deployment.update", target=f"deployment:{data.name}",
                 detail={k: ("(changed)" if k == "api_key" else v) for k, v in changed.items()})
    return "updated"


def set_deployment_enabled(session: Session, who: Principal, name: str, enabled: bool) -> Deployment:
    """Take one deployment out of routing (or put it back); every process reloads on its next request."""
    action = "gateway.deployment." + ("enable" if enabled else "disable")
    who.require_admin(action, f"deployment:{name}")
    dep = get_deployment(session, name)
    changed = dep.enabled != enabled
    dep.enabled = enabled
    bump(session)
    audit.record(session, actor=who.actor, action=action, target=f"deployment:{name}", detail={"changed": changed})
    return dep


def set_model_enabled(session: Session, who: Principal, name: str, enabled: bool) -> GatewayModel:
    """Hide a model from /v1/models and refuse calls to it (or undo that); its deployments keep their state."""
    action = "gateway.model." + ("enable" if enabled else "disable")
    who.require_admin(action, f"model:{name}")
    model = get_model(session, name)
    changed = model.enabled != enabled
    model.enabled = enabled
    bump(session)
    audit.record(session, actor=who.actor, action=action, target=f"model:{name}", detail={"changed": changed})
    return model


def _forget_circuits(session: Session, deployment_ids: list[int]) -> None:
    if deployment_ids:
        session.execute(delete(CircuitReport).where(CircuitReport.deployment_id.in_(deployment_ids)))


def delete_deployment(session: Session, who: Principal, name: str) -> None:
    """Remove a deployment from the catalogue. Its usage and transcripts stay: they name it as text."""
    who.require_admin("gateway.deployment.delete", f"deployment:{name}")
    dep = get_deployment(session, name)
    detail = {"model": dep.model.name, "base_url": dep.base_url, "upstream_model": dep.upstream_model}
    _forget_circuits(session, [dep.id])
    session.delete(dep)
    session.flush()
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.deployment.delete", target=f"deployment:{name}",
                 detail=detail)


def delete_model(session: Session, who: Principal, name: str, *, force: bool = False) -> list[str]:
    """Remove a model; one that still has deployments only with ``force``, which deletes them with it.

    Returns the names of the deployments deleted with it. Usage and transcripts stay (names as text).
    """
    who.require_admin("gateway.model.delete", f"model:{name}")
    model = get_model(session, name)
    deps = [d.name for d in model.deployments]
    if deps and not force:
        raise Conflict(f"model {name!r} still has deployments ({', '.join(deps)}): delete or move them first, "
                       f"or delete them with it (--force, ?force=true)", field="model")
    _forget_circuits(session, [d.id for d in model.deployments])
    session.delete(model)  # its deployments go with it (delete-orphan)
    session.flush()
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.model.delete", target=f"model:{name}",
                 detail={"deployments_deleted": deps})
    return deps


def _affected(session: Session, req: CutoffRequest) -> list[Deployment]:
    if not (req.jurisdiction or req.party):
        raise BadInput("name a --jurisdiction or a --party", field="jurisdiction")
    found = []
    party = parties.get_party(session, req.party) if req.party else None
    for dep in list_deployments(session):
        facts = {dep.hosting_jurisdiction, dep.operator.jurisdiction, dep.operator.parent_jurisdiction,
                 dep.developer.jurisdiction, dep.developer.parent_jurisdiction}
        if (req.jurisdiction and req.jurisdiction in facts) or (
                party and party.id in (dep.operator_id, dep.developer_id)):
            found.append(dep)
    return found


def cutoff(session: Session, who: Principal, req: CutoffRequest) -> list[Deployment]:
    """Withdraw every deployment touching a jurisdiction or party (hosting, operator, developer, parents)."""
    who.require_admin("gateway.cutoff", req.jurisdiction or req.party or "")
    affected = _affected(session, req)
    for dep in affected:
        dep.withdrawn, dep.withdrawn_reason = True, req.reason
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.cutoff", target=req.jurisdiction or req.party or "",
                 detail={"reason": req.reason, "withdrawn": [d.name for d in affected]})
    return affected


def restore(session: Session, who: Principal, req: CutoffRequest) -> list[Deployment]:
    who.require_admin("gateway.restore", req.jurisdiction or req.party or "")
    affected = [d for d in _affected(session, req) if d.withdrawn]
    for dep in affected:
        dep.withdrawn, dep.withdrawn_reason = False, ""
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.restore", target=req.jurisdiction or req.party or "",
                 detail={"restored": [d.name for d in affected]})
    return affected


def public(dep: Deployment, circuit: CircuitView = CLOSED) -> DeploymentPublic:
    return DeploymentPublic(
        id=dep.id, name=dep.name, model=dep.model.name, backend=dep.backend, base_url=dep.base_url,
        upstream_model=dep.upstream_model, has_api_key=bool(dep.api_key_encrypted),
        hosting_jurisdiction=dep.hosting_jurisdiction, operator=dep.operator.name,
        operator_jurisdiction=dep.operator.jurisdiction, operator_parent_jurisdiction=dep.operator.parent_jurisdiction,
        developer=dep.developer.name, developer_jurisdiction=dep.developer.jurisdiction, licence=dep.licence,
        open_weights=dep.open_weights, languages=[LanguageTag(**t) for t in dep.languages],
        context_length=dep.context_length, price_in=dep.price_in, price_out=dep.price_out, currency=dep.currency,
        priority=dep.priority,
        weight=dep.weight, withdrawn=dep.withdrawn, withdrawn_reason=dep.withdrawn_reason, enabled=dep.enabled,
        circuit=circuit.state, circuit_process=circuit.process, circuit_at=circuit.at,
        circuit_detail=circuit.detail, retries=dep.retries,
        failures_to_open=dep.failures_to_open, cool_down_seconds=dep.cool_down_seconds)


def deployments_public(session: Session, model: str | None = None,
                       local: tuple[str, Breakers] | None = None) -> list[DeploymentPublic]:
    """Deployments with their circuits as the server processes report them (``local``: this server's own)."""
    circuits = reported(session, local)
    return [public(d, circuits.get(d.id, CLOSED)) for d in list_deployments(session, model)]


def _key_policy_row(session: Session, prefix: str) -> KeyPolicy:
    return session.get(KeyPolicy, prefix) or KeyPolicy(key_prefix=prefix, default_classification="open",
                                                       floor_classification="open", requests_per_minute=None)


def key_policy(session: Session, who: Principal, prefix: str) -> KeyPolicyPublic:
    """A key's policy as stored (its organisation's may bind harder); its owner or an admin may read it."""
    key = identity.get_api_key(session, prefix)
    if key.user_id != who.user_id:
        who.require_admin("gateway.key_policy.read", f"key:{prefix}")
    return _key_policy_public(_key_policy_row(session, key.prefix))


def _key_policy_public(row: KeyPolicy) -> KeyPolicyPublic:
    return KeyPolicyPublic(key_prefix=row.key_prefix, default_classification=row.default_classification,
                           floor_classification=row.floor_classification,
                           requests_per_minute=row.requests_per_minute, models=row.models,
                           tokens_per_minute=row.tokens_per_minute, max_concurrency=row.max_concurrency)


def _merged(row: KeyPolicy, data: KeyPolicySet) -> KeyPolicySet:
    """The policy after the change: what ``data`` states replaces the stored value, the rest is kept.

    A floor raised above the kept default carries the default up with it (a default below the floor
    could never apply); an explicit ``requests_per_minute: null`` clears the limit.
    """
    given = data.model_fields_set
    # The allowlist, tokens per minute and concurrency stay as sent (given or not), for ``_spend_stricter``.
    merged = {"default_classification": row.default_classification, "floor_classification": row.floor_classification,
              "requests_per_minute": row.requests_per_minute, **data.model_dump(include=given)}
    if "default_classification" not in given and rank(merged["default_classification"]) < rank(
            merged["floor_classification"]):
        merged["default_classification"] = merged["floor_classification"]
    return KeyPolicySet(**merged)


def set_key_policy(session: Session, who: Principal, prefix: str, data: KeyPolicySet) -> KeyPolicy:
    """Change what ``data`` states of a key's policy, keeping the rest (a partial update).

    A key's owner may only make its policy stricter; anything looser needs a deployment admin. Nobody
    may set it looser than its organisation's policy, which binds the key's calls whatever it says.
    Both rules judge the policy as it will be after the change, not the request alone.
    """
    key = identity.get_api_key(session, prefix)
    row = _key_policy_row(session, key.prefix)
    merged = _merged(row, data)
    if rank(merged.default_classification) < rank(merged.floor_classification):
        raise BadInput("the default classification may not be below the floor", field="default_classification")
    if key.user_id != who.user_id or not _stricter(row, merged):
        who.require_admin("gateway.key_policy", f"key:{prefix}")
    _within_organisation(session, key, data)
    row.default_classification = merged.default_classification
    row.floor_classification = merged.floor_classification
    row.requests_per_minute = merged.requests_per_minute
    _set_spend_limits(row, data)
    session.add(row)
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.key_policy", target=f"key:{key.prefix}",
                 detail={"changed": sorted(data.model_fields_set), **merged.model_dump()})
    return row


SPEND_FIELDS = ("models", "tokens_per_minute", "max_concurrency")


def _set_spend_limits(row: KeyPolicy, data: KeyPolicySet) -> None:
    """Change only the stated fields (null clears one): a request about the floor leaves the allowlist be."""
    given = data.model_fields_set
    if "models" in given:
        row.models = sorted(set(data.models)) if data.models is not None else None
    if "tokens_per_minute" in given:
        row.tokens_per_minute = data.tokens_per_minute
    if "max_concurrency" in given:
        row.max_concurrency = data.max_concurrency


def _lower(old: int | None, new: int | None) -> bool:
    return new == old or (new is not None and (old is None or new <= old))


def _spend_stricter(old: KeyPolicy, new: KeyPolicySet) -> bool:
    """Whether the stated allowlist and limits only narrow what the key could do."""
    given = new.model_fields_set
    narrower = "models" not in given or new.models == old.models or (
        new.models is not None and (old.models is None or set(new.models) <= set(old.models)))
    return narrower and all(_lower(getattr(old, f), getattr(new, f)) for f in SPEND_FIELDS[1:] if f in given)


def _stricter(old: KeyPolicy, new: KeyPolicySet) -> bool:
    lower_rate = new.requests_per_minute is not None and (
        old.requests_per_minute is None or new.requests_per_minute <= old.requests_per_minute)
    same_rate = new.requests_per_minute == old.requests_per_minute
    return (rank(new.floor_classification) >= rank(old.floor_classification)
            and rank(new.default_classification) >= rank(old.default_classification)
            and (lower_rate or same_rate) and _spend_stricter(old, new))


def _key_organisation(session: Session, key: ApiKey) -> int | None:
    """The organisation a key's calls are bound to when it names none: its owner's only one."""
    if key.organisation_id is not None:
        return key.organisation_id
    orgs = identity.memberships_of(session, key.user_id)
    return next(iter(orgs)) if len(orgs) == 1 else None


def _within_organisation(session: Session, key: ApiKey, data: KeyPolicySet) -> None:
    """Refuse a value the request states explicitly that is looser than the key's organisation's policy."""
    org_id = _key_organisation(session, key)
    org = session.get(OrgPolicy, org_id) if org_id is not None else None
    if org is None:
        return
    given = data.model_fields_set  # an unstated floor stays open on the key: the organisation's binds anyway
    for field in ("floor_classification", "default_classification"):
        if field in given and rank(getattr(data, field)) < rank(org.floor_classification):
            raise BadInput(f"organisation {org_id}'s floor is {org.floor_classification}: a key may be stricter, "
                           f"never looser", field=field)
    limit = org.requests_per_minute_per_person
    if limit and data.requests_per_minute is not None and data.requests_per_minute > limit:
        raise BadInput(f"organisation {org_id} allows {limit} requests per minute per person: a key may be "
                       f"stricter, never looser", field="requests_per_minute")


def org_policy(session: Session, who: Principal, organisation_id: int) -> OrgPolicyPublic:
    """Everything that binds the gateway calls made for an organisation; its members and admins may read it."""
    org = identity.get_organisation(session, organisation_id)
    who.require_role(org.id, *ORG_ROLES, action="gateway.org_policy.read", target=f"organisation:{org.id}")
    row = session.get(OrgPolicy, org.id) or OrgPolicy(organisation_id=org.id, floor_classification="open",
                                                      tokens_period="month")
    budget = session.get(OrgBudget, org.id)
    logging = session.get(OrgLogging, org.id)
    kept = bool(logging and logging.enabled)
    cached = session.get(OrgCache, org.id)
    kept_responses = session.get(OrgResponses, org.id)
    return OrgPolicyPublic(
        organisation_id=org.id, organisation=org.name, floor_classification=row.floor_classification,
        requests_per_minute_per_person=row.requests_per_minute_per_person, tokens_per_person=row.tokens_per_person,
        tokens_period=row.tokens_period, budget_tokens=budget.tokens if budget else None,
        budget_period=budget.period if budget else None, transcripts_kept=kept,
        retention_days=logging.retention_days if logging and kept else None,
        cache_ttl_seconds=cached.ttl_seconds if cached else None, responses_kept=kept_responses is not None,
        responses_retention_days=kept_responses.retention_days if kept_responses else None)


def org_policies(session: Session, who: Principal) -> list[OrgPolicyPublic]:
    """The policies of the organisations ``who`` belongs to (a deployment admin: every organisation's)."""
    orgs = identity.list_organisations(session)
    return [org_policy(session, who, o.id) for o in orgs if who.acts_as_admin or o.id in who.roles]


def set_org_policy(session: Session, who: Principal, organisation_id: int, data: OrgPolicySet) -> OrgPolicy:
    """The organisation's own admins (or a deployment admin) set what binds every call made for it."""
    org = identity.get_organisation(session, organisation_id)
    who.require_role(org.id, "org_admin", action="gateway.org_policy", target=f"organisation:{org.id}")
    row = session.get(OrgPolicy, org.id) or OrgPolicy(organisation_id=org.id)
    row.floor_classification = data.floor_classification
    row.requests_per_minute_per_person = data.requests_per_minute_per_person
    row.tokens_per_person, row.tokens_period = data.tokens_per_person, data.tokens_period
    session.add(row)
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.org_policy", target=f"organisation:{org.id}",
                 detail=data.model_dump())
    return row


def set_budget(session: Session, who: Principal, data: BudgetSet) -> OrgBudget:
    org = identity.get_organisation(session, data.organisation_id)
    who.require_admin("gateway.budget", f"organisation:{org.id}")
    row = session.get(OrgBudget, org.id) or OrgBudget(organisation_id=org.id)
    row.tokens, row.period = data.tokens, data.period
    session.add(row)
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.budget", target=f"organisation:{org.id}",
                 detail=data.model_dump())
    return row


def set_org_logging(session: Session, who: Principal, organisation_id: int, data: OrgLoggingSet) -> OrgLogging:
    """Only the organisation's own admins (or a deployment admin) decide whether its prompts are kept."""
    org = identity.get_organisation(session, organisation_id)
    who.require_role(org.id, "org_admin", action="gateway.logging", target=f"organisation:{org.id}")
    row = session.get(OrgLogging, org.id) or OrgLogging(organisation_id=org.id)
    row.enabled, row.retention_days = data.enabled, data.retention_days
    session.add(row)
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.logging", target=f"organisation:{org.id}",
                 detail=data.model_dump())
    return row


def set_org_cache(session: Session, who: Principal, organisation_id: int, data: OrgCacheSet) -> None:
    """Only the organisation's own admins (or a deployment admin) turn its answer cache on or off; the caller
    forgets the kept answers (``purge_cache``) when it is turned off."""
    org = identity.get_organisation(session, organisation_id)
    who.require_role(org.id, "org_admin", action="gateway.cache", target=f"organisation:{org.id}")
    row = session.get(OrgCache, org.id)
    if data.enabled:
        row = row or OrgCache(organisation_id=org.id)
        row.ttl_seconds = data.ttl_seconds
        session.add(row)
    elif row is not None:
        session.delete(row)
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.cache", target=f"organisation:{org.id}",
                 detail=data.model_dump())


def purge_cache(session: Session, who: Principal, organisation_id: int, answers: AnswerCache) -> int:
    """Forget every answer kept for the organisation now."""
    org = identity.get_organisation(session, organisation_id)
    who.require_role(org.id, "org_admin", action="gateway.cache.purge", target=f"organisation:{org.id}")
    count = answers.store.purge(session, org.id)
    audit.record(session, actor=who.actor, action="gateway.cache.purge", target=f"organisation:{org.id}",
                 detail={"deleted": count})
    return count


def list_transcripts(session: Session, who: Principal, organisation_id: int, *, limit: int = 50,
                     model: str | None = None) -> list[Transcript]:
    """The organisation's kept transcripts that have not expired, newest first; the read is audited."""
    org = identity.get_organisation(session, organisation_id)
    target = f"organisation:{org.id}"
    who.require_role(org.id, "org_admin", action="gateway.transcripts.read", target=target)
    q = (select(Transcript).where(Transcript.organisation_id == org.id, Transcript.expires_at > utcnow())
         .order_by(Transcript.id.desc()).limit(limit))
    if model:
        q = q.where(Transcript.model == model)
    rows = list(session.scalars(q))
    # Who read which prompts is itself worth knowing: the event names them, never their content.
    audit.record(session, actor=who.actor, action="gateway.transcripts.read", target=target,
                 detail={"count": len(rows), "ids": [t.id for t in rows], "model": model})
    return rows


def purge_transcripts(session: Session, who: Principal, organisation_id: int) -> int:
    """Delete all of the organisation's kept transcripts now (the retention period is a maximum)."""
    org = identity.get_organisation(session, organisation_id)
    target = f"organisation:{org.id}"
    who.require_role(org.id, "org_admin", action="gateway.transcripts.purge", target=target)
    result = session.execute(delete(Transcript).where(Transcript.organisation_id == org.id))
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    audit.record(session, actor=who.actor, action="gateway.transcripts.purge", target=target,
                 detail={"deleted": count})
    return count
