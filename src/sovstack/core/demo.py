"""Clearly synthetic demo content of the core: organisations, a user per role, parties, a policy."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pluggy
from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core import identity, invitations, parties, policy
from sovstack.core.context import Principal
from sovstack.core.plugins import DemoContext
from sovstack.core.schemas import (
    InvitationCreate,
    MembershipCreate,
    OrganisationCreate,
    PartyCreate,
    UserCreate,
    UserUpdate,
)
from sovstack.core.settings import Settings
from sovstack.core.tables import Organisation

DEMO_DOMAIN = "demo.sovstack.example"
MARKER_ORG = "Synthetic Ministry of Digital Affairs"
SEEDER = Principal.system("demo")

ORGANISATIONS = [
    ("ministry", MARKER_ORG, "government"),
    ("university", "Example Institute of Technology (synthetic)", "academic"),
    ("startup", "Demo Language Startup Pvt Ltd", "startup"),
    ("hospital", "Sample Health Enterprise Ltd (synthetic)", "enterprise"),
    ("provider", "Synthetic Compute Co-operative", "provider"),
    ("civic", "Open Data Civic Trust (demo)", "civil_society"),
]
# (key, name, admin?, [(org key, role)])
USERS = [
    ("admin", "Asha Admin (demo)", True, []),
    ("orgadmin", "Omar Org-Admin (demo)", False, [("ministry", "org_admin")]),
    ("steward", "Sita Steward (demo)", False, [("ministry", "steward"), ("hospital", "steward")]),
    ("reviewer", "Ravi Reviewer (demo)", False, [("ministry", "reviewer")]),
    ("member", "Meera Member (demo)", False, [("university", "member"), ("startup", "member")]),
    ("provider", "Pavel Provider (demo)", False, [("provider", "member")]),
]
# (name, kinds, jurisdiction, ultimate parent, parent jurisdiction, notes)
PARTIES = [
    ("Synthetic DomesticCloud Pvt Ltd", ["compute_provider", "model_host", "storage_operator"], "HOME",
     "", None, "Domestically owned cloud; synthetic."),
    ("Demo Hyperscaler Local Ltd", ["compute_provider", "model_host"], "HOME",
     "Demo Hyperscaler Inc.", "US", "Local subsidiary of a US parent; synthetic."),
    ("Synthetic EuroCloud SAS", ["compute_provider", "storage_operator"], "FR", "", None, "Synthetic."),
    ("Demo Frontier Labs Inc.", ["model_developer", "model_host"], "US", "", None, "Synthetic."),
    ("Synthetic Bharat Language Models", ["model_developer"], "HOME", "", None, "Synthetic."),
    ("Demo ChipWorks Corp.", ["chip_vendor"], "US", "", None, "Synthetic."),
]


def seed(session: Session, settings: Settings, password: str, say: Callable[[str], None]) -> DemoContext:
    """Create the core demo content once; on later runs only reset the demo users' password."""
    ctx = DemoContext(settings=settings, organisations={}, users={}, parties={}, say=say)
    home = ctx.home
    if session.scalar(select(Organisation).where(Organisation.name == MARKER_ORG)) is not None:
        _reset_passwords(session, password)
        _collect(session, ctx)
        return ctx
    for key, name, kind in ORGANISATIONS:
        org = identity.create_organisation(session, SEEDER, OrganisationCreate(
            name=name, kind=kind, jurisdiction=home, description="Synthetic demo organisation."))
        ctx.organisations[key] = org.id
    for key, name, is_admin, roles in USERS:
        user = identity.create_user(session, SEEDER, UserCreate(
            email=f"{key}@{DEMO_DOMAIN}", name=name, password=password, is_admin=is_admin))
        ctx.users[key] = user.id
        for org_key, role in roles:
            identity.add_membership(session, SEEDER, MembershipCreate(
                user_id=user.id, organisation_id=ctx.organisations[org_key], role=role))
    # Meera is invited to the ministry, not added: she sees it on her Invitations page and may accept.
    orgadmin = identity.principal_for(session, identity.get_user(session, ctx.users["orgadmin"]))
    invitations.invite(session, orgadmin, ctx.organisations["ministry"],
                       InvitationCreate(email=f"member@{DEMO_DOMAIN}", role="reviewer"))
    for name, kinds, jur, parent, parent_jur, notes in PARTIES:
        jur = home if jur == "HOME" else jur
        party = parties.create_party(session, SEEDER, PartyCreate(
            name=name, kinds=kinds, jurisdiction=jur, ultimate_parent=parent,
            parent_jurisdiction=parent_jur, notes=notes))
        ctx.parties[name] = party.id
    policy.save(session, SEEDER, policy.default_policy(home))
    say(f"seeded {len(ORGANISATIONS)} organisations, {len(USERS)} users, {len(PARTIES)} parties, a policy and "
        f"an invitation for member@{DEMO_DOMAIN} to the ministry")
    return ctx


def _reset_passwords(session: Session, password: str) -> None:
    for key, *_ in USERS:
        user = identity.get_user(session, f"{key}@{DEMO_DOMAIN}")
        identity.update_user(session, SEEDER, user.id, UserUpdate(password=password))


def _collect(session: Session, ctx: DemoContext) -> None:
    for key, name, _kind in ORGANISATIONS:
        ctx.organisations[key] = identity.get_organisation(session, name).id
    for key, *_ in USERS:
        ctx.users[key] = identity.get_user(session, f"{key}@{DEMO_DOMAIN}").id
    for name, *_ in PARTIES:
        ctx.parties[name] = parties.get_party(session, name).id


def run(session: Session, pm: pluggy.PluginManager, settings: Settings, say: Callable[[str], None]) -> str:
    """Seed core and every module's demo in one transaction; return the demo users' password."""
    password = secrets.token_urlsafe(12)
    ctx = seed(session, settings, password, say)
    pm.hook.sovstack_demo(session=session, ctx=ctx)
    session.commit()
    return password
