"""Console pages of the core: parse the form, call the service, render; no rules of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, TypeVar, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from sovstack.console.auth import (
    LOGIN_CSRF_COOKIE,
    ConsolePoster,
    ConsoleUser,
    new_login_csrf,
    same_secret,
)
from sovstack.console.render import Console
from sovstack.core import audit, documents, identity, invitations, parties, policy
from sovstack.core.api.deps import SESSION_COOKIE, SessionDep, SettingsDep, cookie_signer, session_token
from sovstack.core.context import ORG_ROLES, Principal, unit_of_work
from sovstack.core.errors import BadInput, RateLimited, Refused, SovstackError, Unauthenticated
from sovstack.core.jurisdictions import catalogue
from sovstack.core.schemas import (
    ApiKeyCreate,
    MembershipCreate,
    OrganisationCreate,
    OrgKind,
    PartyCreate,
    PartyKind,
    PolicyCheck,
    UserCreate,
)
from sovstack.core.settings import Settings

router = APIRouter(include_in_schema=False)
AUDIT_PAGE = 50
# Pages verify the chain as they render while that stays quick (~0.2 s); past it, on request.
VERIFY_INLINE_MAX = 50_000
FormStr = Annotated[str, Form()]
# Errors a form can cause; each is shown on the form it came from, with its 4xx status.
FormErrors = (BadInput, Refused)
M = TypeVar("M", bound=BaseModel)


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def see_other(path: str, ok: str = "") -> RedirectResponse:
    """Post-redirect-get, with a flash message for the next page."""
    return RedirectResponse(f"{path}?{urlencode({'ok': ok})}" if ok else path, status_code=303)


def parse(model: type[M], **values: Any) -> M:
    """Validate form values with the API's input model; BadInput names the first wrong field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors()
        fields = [".".join(str(p) for p in e["loc"]) or "form" for e in errors]
        reasons = [f"{f}: {e['msg']}" for f, e in zip(fields, errors, strict=True)]
        raise BadInput(reasons[0], field=fields[0], reasons=reasons) from exc


def local_path(target: str) -> str:
    """``target`` when it is a path on this site, else the dashboard (no open redirects)."""
    ok = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if ok else "/"


def countries() -> list[tuple[str, str]]:
    return sorted(((c.code, c.name) for c in catalogue().countries.values()), key=lambda c: c[1])


# Login and logout ---------------------------------------------------------------------------------

def login_page(request: Request, *, next_path: str, email: str = "", error: SovstackError | None = None,
               status_code: int = 200) -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_login_csrf()
    response = console_of(request).page(request, "login.html", status_code, next_path=next_path, email=email,
                                        error=error, login_csrf=token)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=request.url.scheme == "https")
    if isinstance(error, RateLimited):
        response.headers["retry-after"] = str(error.retry_after)
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return login_page(request, next_path=local_path(next))


@router.post("/login")
def login(request: Request, session: SessionDep, settings: SettingsDep, email: FormStr = "",
          password: FormStr = "", csrf_token: FormStr = "", next: FormStr = "/") -> Response:
    next_path = local_path(next)
    if not same_secret(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        err = Refused("the login form expired; please try again", reasons=["missing or wrong CSRF token"])
        return login_page(request, next_path=next_path, email=email, error=err, status_code=403)
    try:
        token, _ = identity.login(session, email, password, max_failures=settings.login_max_failures,
                                  lockout_seconds=settings.login_lockout_seconds,
                                  max_age=settings.session_max_age,
                                  client=request.client.host if request.client else "",
                                  max_per_client=settings.login_max_failures_per_client)
    except (Unauthenticated, RateLimited) as exc:
        return login_page(request, next_path=next_path, email=email, error=exc, status_code=exc.status)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, request, settings, token)
    return response


def set_session_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, cookie_signer(settings).dumps(token),
                        max_age=settings.session_max_age, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: ConsolePoster) -> Response:
    token = session_token(request)
    if token:
        identity.logout(session, token)
    response = see_other("/login", "You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# Dashboard ----------------------------------------------------------------------------------------

@router.get("/")
def dashboard(request: Request, session: SessionDep, settings: SettingsDep,
              user: ConsoleUser) -> HTMLResponse:
    who = user[1]
    home = policy.current(session, settings.home_jurisdiction).home_jurisdiction
    counts = {"Organisations": len(identity.list_organisations(session)),
              "Users": len(identity.list_users(session, who)),
              "Parties": len(parties.list_parties(session))}
    chain = None
    if who.acts_as_admin:
        counts["Audit events"] = audit.length(session)
        chain = chain_status(session, counts["Audit events"], force=False)
    return console_of(request).page(request, "dashboard.html", counts=counts, chain=chain, home=home,
                                    home_name=catalogue().countries[home].name)


def chain_status(session: Session, length: int, *, force: bool) -> audit.Verification | None:
    """The chain verified now, unless it is long and nobody asked (None: offer a button)."""
    return audit.verify(session) if force or length <= VERIFY_INLINE_MAX else None


# Organisations ------------------------------------------------------------------------------------

def organisations_page(request: Request, session: Session, settings: Settings, *,
                       error: SovstackError | None = None,
                       form: dict[str, Any] | None = None) -> HTMLResponse:
    return console_of(request).page(
        request, "organisations.html", error.status if error else 200,
        organisations=identity.list_organisations(session), kinds=get_args(OrgKind), countries=countries(),
        error=error, form=form or {"jurisdiction": settings.home_jurisdiction})


@router.get("/organisations")
def organisations(request: Request, session: SessionDep, settings: SettingsDep,
                  user: ConsoleUser) -> HTMLResponse:
    return organisations_page(request, session, settings)


@router.post("/organisations")
def create_organisation(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                        name: FormStr = "", kind: FormStr = "", jurisdiction: FormStr = "",
                        description: FormStr = "") -> Response:
    form = {"name": name, "kind": kind, "jurisdiction": jurisdiction, "description": description}
    try:
        data = parse(OrganisationCreate, **form)
        with unit_of_work(session, user[1]):
            org = identity.create_organisation(session, user[1], data)
    except FormErrors as exc:
        return organisations_page(request, session, settings, error=exc, form=form)
    return see_other(f"/organisations/{org.id}", f"Organisation {org.name} created.")


def organisation_page(request: Request, session: Session, who: Principal, org_id: int, *,
                      error: SovstackError | None = None, form: dict[str, Any] | None = None) -> HTMLResponse:
    org = identity.get_organisation(session, org_id)
    people = identity.list_users(session, who)
    members = [(u, m.role) for u in people for m in identity.visible_memberships(who, u)
               if m.organisation_id == org.id]
    can_manage = who.has_role(org.id, "org_admin")
    pending = invitations.of_organisation(session, who, org.id) if can_manage else []
    return console_of(request).page(request, "organisation.html", error.status if error else 200, org=org,
                                    members=members, people=people, roles=ORG_ROLES, error=error,
                                    can_manage=can_manage, can_add=who.acts_as_admin, pending=pending,
                                    status_of=invitations.status_of, form=form or {},
                                    is_member=who.has_role(org.id))


@router.get("/organisations/{org_id}")
def organisation(request: Request, org_id: int, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    return organisation_page(request, session, user[1], org_id)


@router.post("/organisations/{org_id}/members")
def add_member(request: Request, org_id: int, session: SessionDep, user: ConsolePoster,
               user_id: FormStr = "", role: FormStr = "") -> Response:
    try:
        data = parse(MembershipCreate, user_id=user_id, organisation_id=org_id, role=role)
        with unit_of_work(session, user[1]):
            identity.add_membership(session, user[1], data)
    except FormErrors as exc:
        return organisation_page(request, session, user[1], org_id, error=exc)
    return see_other(f"/organisations/{org_id}", f"Membership added ({role}).")


# Users --------------------------------------------------------------------------------------------

def users_page(request: Request, session: Session, who: Principal, *, error: SovstackError | None = None,
               form: dict[str, Any] | None = None) -> HTMLResponse:
    users = identity.list_users(session, who)
    return console_of(request).page(request, "users.html", error.status if error else 200, users=users,
                                    seen={u.id: identity.visible_memberships(who, u) for u in users},
                                    error=error, form=form or {})


@router.get("/users")
def users(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    return users_page(request, session, user[1])


@router.post("/users")
def create_user(request: Request, session: SessionDep, user: ConsolePoster, email: FormStr = "",
                name: FormStr = "", password: FormStr = "", is_admin: FormStr = "") -> Response:
    form = {"email": email, "name": name, "is_admin": bool(is_admin)}
    try:
        data = parse(UserCreate, **form, password=password or None)
        with unit_of_work(session, user[1]):
            created = identity.create_user(session, user[1], data)
    except FormErrors as exc:
        return users_page(request, session, user[1], error=exc, form=form)
    return see_other("/users", f"User {created.email} created.")


# API keys -----------------------------------------------------------------------------------------

def keys_page(request: Request, session: Session, who: Principal, *, error: SovstackError | None = None,
              form: dict[str, Any] | None = None, new_key: str = "", status_code: int = 200) -> HTMLResponse:
    scopes = [s for s in request.app.state.scopes if s != "admin" or who.is_admin]
    response = console_of(request).page(
        request, "keys.html", error.status if error else status_code,
        keys=identity.list_api_keys(session, who), scopes=scopes,
        organisations=identity.list_organisations(session), error=error, new_key=new_key,
        form=form or {"scopes": ["read", "write"]})
    response.headers["cache-control"] = "no-store"
    return response


@router.get("/keys")
def keys(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    return keys_page(request, session, user[1])


@router.post("/keys")
def create_key(request: Request, session: SessionDep, user: ConsolePoster, name: FormStr = "",
               scopes: Annotated[list[str], Form()] = [], organisation_id: FormStr = "",  # noqa: B006
               expires_in_days: FormStr = "") -> Response:
    form = {"name": name, "scopes": scopes, "organisation_id": organisation_id or None,
            "expires_in_days": expires_in_days or None}
    try:
        data = parse(ApiKeyCreate, **form)
        with unit_of_work(session, user[1]):
            _, secret = identity.create_api_key(session, user[1], data, request.app.state.scopes)
    except FormErrors as exc:
        return keys_page(request, session, user[1], error=exc, form=form)
    # Shown in this answer only: never stored, never put in a redirect or a flash.
    return keys_page(request, session, user[1], new_key=secret, status_code=201)


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: int, session: SessionDep, user: ConsolePoster) -> Response:
    try:
        with unit_of_work(session, user[1]):
            key = identity.revoke_api_key(session, user[1], key_id)
    except FormErrors as exc:
        return keys_page(request, session, user[1], error=exc)
    return see_other("/keys", f"Key {key.prefix} revoked.")


# Parties and jurisdictions ------------------------------------------------------------------------

def parties_page(request: Request, session: Session, settings: Settings, *,
                 error: SovstackError | None = None, form: dict[str, Any] | None = None) -> HTMLResponse:
    home = settings.home_jurisdiction
    rows = [parties.public(p, home) for p in parties.list_parties(session)]
    return console_of(request).page(request, "parties.html", error.status if error else 200, parties=rows,
                                    kinds=get_args(PartyKind), countries=countries(), home=home, error=error,
                                    form=form or {"kinds": [], "jurisdiction": home})


@router.get("/parties")
def parties_list(request: Request, session: SessionDep, settings: SettingsDep,
                 user: ConsoleUser) -> HTMLResponse:
    return parties_page(request, session, settings)


@router.post("/parties")
def create_party(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                 name: FormStr = "", kinds: Annotated[list[str], Form()] = [],  # noqa: B006
                 jurisdiction: FormStr = "", ultimate_parent: FormStr = "", parent_jurisdiction: FormStr = "",
                 website: FormStr = "", notes: FormStr = "") -> Response:
    form = {"name": name, "kinds": kinds, "jurisdiction": jurisdiction, "ultimate_parent": ultimate_parent,
            "parent_jurisdiction": parent_jurisdiction or None, "website": website, "notes": notes}
    try:
        data = parse(PartyCreate, **form)
        with unit_of_work(session, user[1]):
            party = parties.create_party(session, user[1], data)
    except FormErrors as exc:
        return parties_page(request, session, settings, error=exc, form=form)
    return see_other("/parties", f"Party {party.name} registered.")


@router.get("/jurisdictions")
def jurisdictions(request: Request, user: ConsoleUser) -> HTMLResponse:
    return console_of(request).page(request, "jurisdictions.html", catalogue=catalogue())


# Policy -------------------------------------------------------------------------------------------

def policy_page(request: Request, session: Session, settings: Settings, who: Principal, *,
                error: SovstackError | None = None, draft: str | None = None,
                check: dict[str, str] | None = None, decision: policy.Decision | None = None) -> HTMLResponse:
    doc = policy.current(session, settings.home_jurisdiction)
    return console_of(request).page(
        request, "policy.html", error.status if error else 200, doc=doc,
        draft=draft if draft is not None else doc.model_dump_json(indent=2), error=error,
        history=policy.history(session)[:10], party_names=[p.name for p in parties.list_parties(session)],
        countries=countries(), check=check or {}, decision=decision, levels=policy.LEVELS,
        actions=get_args(policy.Action), can_edit=who.acts_as_admin)


@router.get("/policy")
def policy_view(request: Request, session: SessionDep, settings: SettingsDep, user: ConsoleUser,
                classification: str = "", action: str = "process", party: str = "",
                hosting_jurisdiction: str = "") -> HTMLResponse:
    check = {"classification": classification, "action": action, "party": party,
             "hosting_jurisdiction": hosting_jurisdiction}
    if not classification:
        return policy_page(request, session, settings, user[1], check=check)
    try:
        decision = decide(session, settings, user[1], check)
    except BadInput as exc:
        return policy_page(request, session, settings, user[1], error=exc, check=check)
    return policy_page(request, session, settings, user[1], check=check, decision=decision)


def decide(session: Session, settings: Settings, who: Principal, check: dict[str, str]) -> policy.Decision:
    """What the policy in force decides for the form's question; changes nothing."""
    body = parse(PolicyCheck, classification=check["classification"], action=check["action"],
                 party=check["party"] or None, hosting_jurisdiction=check["hosting_jurisdiction"] or None)
    party = parties.get_party(session, body.party) if body.party else None
    doc = policy.current(session, settings.home_jurisdiction)
    return policy.decide(doc, who, body.action, policy.Resource(
        classification=body.classification, party=party, hosting_jurisdiction=body.hosting_jurisdiction))


@router.post("/policy")
def save_policy(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                document: FormStr = "") -> Response:
    try:
        doc = parse(policy.PolicyDocument, **parse_json(document))
        with unit_of_work(session, user[1]):
            version = policy.save(session, user[1], doc)
    except FormErrors as exc:
        return policy_page(request, session, settings, user[1], error=exc, draft=document)
    return see_other("/policy", f"Policy version {version.id} is now in force.")


def parse_json(text: str) -> dict[str, Any]:
    value = documents.load_json(text, "the policy", field="document")
    if not isinstance(value, dict):
        raise BadInput("the policy must be a JSON object", field="document")
    return value


# Audit --------------------------------------------------------------------------------------------

def audit_filter(actor: str = "", action: str = "", outcome: str = "") -> audit.AuditFilter:
    if outcome and outcome not in audit.OUTCOMES:
        raise BadInput(f"outcome must be one of {', '.join(audit.OUTCOMES)}", field="outcome")
    return audit.AuditFilter(actor=actor or None, action=action or None, outcome=outcome or None)


@router.get("/audit")
def audit_log(request: Request, session: SessionDep, user: ConsoleUser, actor: str = "", action: str = "",
              outcome: str = "", before: Annotated[int | None, Query(ge=1)] = None,
              verify: bool = False) -> HTMLResponse:
    user[1].require_admin("audit.read")
    filters = {"actor": actor, "action": action, "outcome": outcome}
    events = [audit.as_dict(e) for e in audit.search(session, audit_filter(**filters), limit=AUDIT_PAGE,
                                                       before=before)]
    query = {k: v for k, v in filters.items() if v}
    older = urlencode({**query, "before": events[-1]["seq"]}) if len(events) == AUDIT_PAGE else ""
    return console_of(request).page(request, "audit.html", events=events, filters=filters, older=older,
                                    export_query=urlencode(query),
                                    chain=chain_status(session, audit.length(session), force=verify),
                                    outcomes=audit.OUTCOMES, paged=before is not None)


@router.get("/console/audit.jsonl")
def audit_export(request: Request, user: ConsoleUser, actor: str = "", action: str = "",
                 outcome: str = "") -> StreamingResponse:
    user[1].require_admin("audit.export")
    f = audit_filter(actor, action, outcome)

    def lines() -> Iterator[str]:
        # Its own session: the stream outlives the request's dependencies.
        with request.app.state.db.session() as session:
            yield from audit.export_lines(session, f)

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"content-disposition": 'attachment; filename="audit.jsonl"'})
