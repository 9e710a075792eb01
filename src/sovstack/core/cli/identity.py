"""`sovstack org|user|key|invitation …`: identity from the shell, as the local operator (or ``--as`` a user)."""

from __future__ import annotations

import typer
from sqlalchemy.orm import Session

from sovstack.core import identity, invitations
from sovstack.core.cli.common import (
    OPERATOR,
    JsonOpt,
    acting_as,
    change,
    emit,
    emit_one,
    ref,
    say,
    session_of,
    state,
)
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    InvitationCreate,
    MembershipCreate,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
    UserCreate,
    UserUpdate,
)

org_app = typer.Typer(help="Organisations: government, academic, startup, enterprise, provider, civil society.",
                      no_args_is_help=True)
user_app = typer.Typer(help="Users and their roles in organisations.", no_args_is_help=True)
key_app = typer.Typer(help="API keys: shown once, stored hashed.", no_args_is_help=True)
invitation_app = typer.Typer(help="Invitations to organisations: a person joins only by accepting one.",
                             no_args_is_help=True)

ORG_COLUMNS = ["id", "name", "kind", "jurisdiction", "created_at"]


@org_app.command("list")
def org_list(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """List organisations."""
    with session_of(ctx) as s:
        emit([OrganisationPublic.model_validate(o) for o in identity.list_organisations(s)], ORG_COLUMNS, as_json)


@org_app.command("create")
def org_create(ctx: typer.Context, name: str, kind: str = typer.Option(..., help="government|academic|startup|"
               "enterprise|provider|civil_society"), jurisdiction: str = typer.Option(...),
               description: str = "", as_json: bool = JsonOpt) -> None:
    """Create an organisation."""
    data = OrganisationCreate(name=name, kind=kind, jurisdiction=jurisdiction,
                              description=description)
    with change(ctx) as s:
        org = identity.create_organisation(s, OPERATOR, data)
    emit_one(OrganisationPublic.model_validate(org), as_json)


@org_app.command("update")
def org_update(ctx: typer.Context, org: str, name: str | None = None, kind: str | None = None,
               jurisdiction: str | None = None, description: str | None = None,
               as_json: bool = JsonOpt) -> None:
    """Change an organisation (by id or name)."""
    data = OrganisationUpdate(name=name, kind=kind, jurisdiction=jurisdiction,
                              description=description)
    with change(ctx) as s:
        found = identity.get_organisation(s, ref(org))
        updated = identity.update_organisation(s, OPERATOR, found.id, data)
    emit_one(OrganisationPublic.model_validate(updated), as_json)


@user_app.command("list")
def user_list(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """List users with their roles."""
    with session_of(ctx) as s:
        rows = [{"id": u.id, "email": u.email, "name": u.name, "is_admin": u.is_admin, "is_active": u.is_active,
                 "roles": [f"{m.role}@{m.organisation.name}" for m in u.memberships]}
                for u in identity.list_users(s, OPERATOR)]
    emit(rows, ["id", "email", "name", "is_admin", "is_active", "roles"], as_json)


@user_app.command("create")
def user_create(ctx: typer.Context, email: str, name: str = typer.Option(...),
                password: str | None = typer.Option(None, help="At least 12 characters."),
                admin: bool = typer.Option(False, "--admin", help="Make a deployment admin.")) -> None:
    """Create a user (with a password to use the console)."""
    data = UserCreate(email=email, name=name, password=password, is_admin=admin)
    with change(ctx) as s:
        user = identity.create_user(s, OPERATOR, data)
    say(f"created user {user.id} {user.email}" + (" (admin)" if user.is_admin else ""))


@user_app.command("update")
def user_update(ctx: typer.Context, user: str, name: str | None = None,
                password: str | None = None, admin: bool | None = None,
                active: bool | None = None) -> None:
    """Change a user (by id or email): name, password, --admin/--no-admin, --active/--no-active."""
    data = UserUpdate(name=name, password=password, is_admin=admin, is_active=active)
    with change(ctx) as s:
        found = identity.get_user(s, ref(user))
        identity.update_user(s, OPERATOR, found.id, data)
    say(f"updated user {found.id} {found.email}")


@user_app.command("unlock")
def user_unlock(ctx: typer.Context, user: str) -> None:
    """Lift the login limit on an account now (by id or email), instead of waiting for it to pass."""
    with change(ctx) as s:
        found = identity.unlock(s, OPERATOR, identity.get_user(s, ref(user)).id)
    say(f"user {found.id} {found.email} may log in again")


@user_app.command("grant")
def user_grant(ctx: typer.Context, user: str, org: str = typer.Option(..., "--org"),
               role: str = typer.Option(..., help="org_admin|steward|reviewer|member")) -> None:
    """Give a user a role in an organisation directly, as the deployment's operator (org_admins invite)."""
    with change(ctx) as s:
        u, o = identity.get_user(s, ref(user)), identity.get_organisation(s, ref(org))
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=u.id, organisation_id=o.id,
                                                              role=role))
    say(f"{u.email} is now {role} in {o.name}")


@user_app.command("revoke-role")
def user_revoke_role(ctx: typer.Context, user: str, org: str = typer.Option(..., "--org"),
                     role: str = typer.Option(...)) -> None:
    """Take a role in an organisation away from a user."""
    with change(ctx) as s:
        u, o = identity.get_user(s, ref(user)), identity.get_organisation(s, ref(org))
        identity.remove_membership(s, OPERATOR, MembershipCreate(user_id=u.id, organisation_id=o.id,
                                                                 role=role))
    say(f"{u.email} no longer holds {role} in {o.name}")


@key_app.command("create")
def key_create(ctx: typer.Context, name: str, user: str = typer.Option(..., help="Owner (id or email)."),
               scope: list[str] = typer.Option(["read", "write"], "--scope", help="Repeat for each scope."),
               org: str | None = typer.Option(None, "--org"),
               expires_in_days: int | None = None, as_json: bool = JsonOpt) -> None:
    """Create an API key; the whole key is printed this once."""
    with change(ctx) as s:
        owner = identity.get_user(s, ref(user))
        org_id = identity.get_organisation(s, ref(org)).id if org else None
        data = ApiKeyCreate(name=name, scopes=scope, organisation_id=org_id, expires_in_days=expires_in_days,
                            user_id=owner.id)
        key, secret = identity.create_api_key(s, OPERATOR, data, state(ctx).scopes)
    created = ApiKeyCreated(**ApiKeyPublic.model_validate(key).model_dump(), key=secret)
    if as_json:
        emit_one(created, True)
    else:
        say(f"API key {key.prefix} for {owner.email}, scopes {', '.join(key.scopes)}")
        say(f"[bold]{secret}[/bold]")
        say("Copy it now: it is stored hashed and will not be shown again.")


@key_app.command("list")
def key_list(ctx: typer.Context, user: str | None = None, as_json: bool = JsonOpt) -> None:
    """List API keys (never their secrets)."""
    with session_of(ctx) as s:
        keys = identity.list_api_keys(s, OPERATOR, all_users=True)
        if user:
            owner = identity.get_user(s, ref(user))
            keys = [k for k in keys if k.user_id == owner.id]
        rows = [ApiKeyPublic.model_validate(k) for k in keys]
    emit(rows, ["id", "prefix", "name", "user_id", "scopes", "expires_at", "revoked_at", "last_used_at"], as_json)


@key_app.command("revoke")
def key_revoke(ctx: typer.Context, key: str = typer.Argument(..., help="Key id or prefix (sk-xxxxxxxx).")) -> None:
    """Revoke an API key at once."""
    with change(ctx) as s:
        revoked = identity.revoke_api_key(s, OPERATOR, ref(key))
    say(f"revoked {revoked.prefix}")


INVITATION_COLUMNS = ["id", "organisation", "email", "role", "status", "invited_by", "expires_at"]
AsOpt = typer.Option(None, "--as", help="Act as this user (email) with their own roles, instead of the operator.")


def _who(s: Session, as_user: str | None) -> Principal:
    return OPERATOR if as_user is None else acting_as(s, as_user, admin=False)


@invitation_app.command("create")
def invitation_create(ctx: typer.Context, org: str, email: str,
                      role: str = typer.Option(..., help="org_admin|steward|reviewer|member"),
                      days: int = typer.Option(14, min=1, max=90, help="Days before it expires."),
                      as_user: str | None = AsOpt, as_json: bool = JsonOpt) -> None:
    """Invite an email address to a role in an organisation; the person accepts or declines it."""
    data = InvitationCreate(email=email, role=role, expires_in_days=days)
    with session_of(ctx) as s:
        who = _who(s, as_user)
        with unit_of_work(s, who):
            inv = invitations.public(invitations.invite(s, who, identity.get_organisation(s, ref(org)).id, data))
    if as_json:
        emit_one(inv, True)
        return
    say(f"invitation {inv.id}: {inv.email} to {inv.role} in {inv.organisation}, until {inv.expires_at:%Y-%m-%d}")


@invitation_app.command("list")
def invitation_list(ctx: typer.Context, org: str | None = typer.Option(None, "--org", help="An organisation's "
                    "invitations (its org_admins); without it, the invitations sent to --as."),
                    everything: bool = typer.Option(False, "--all", help="Decided and expired ones too."),
                    as_user: str | None = AsOpt, as_json: bool = JsonOpt) -> None:
    """List an organisation's pending invitations, or the ones waiting for a user (--as)."""
    with session_of(ctx) as s:
        who = _who(s, as_user)
        with unit_of_work(s, who):
            if org is not None:
                found = invitations.of_organisation(s, who, identity.get_organisation(s, ref(org)).id,
                                                    everything=everything)
            else:
                found = invitations.mine(s, who)
            rows = [invitations.public(i) for i in found]
    emit(rows, INVITATION_COLUMNS, as_json)


@invitation_app.command("accept")
def invitation_accept(ctx: typer.Context, invitation: int,
                      as_user: str = typer.Option(..., "--as", help="The person invited (email).")) -> None:
    """Accept an invitation sent to you: you hold its role in its organisation from now on."""
    with session_of(ctx) as s:
        who = acting_as(s, as_user, admin=False)
        with unit_of_work(s, who):
            m = invitations.accept(s, who, invitation)
            done = f"{as_user} is now {m.role} in {m.organisation.name}"
    say(done)


@invitation_app.command("decline")
def invitation_decline(ctx: typer.Context, invitation: int,
                       as_user: str = typer.Option(..., "--as", help="The person invited (email).")) -> None:
    """Decline an invitation sent to you."""
    with session_of(ctx) as s:
        who = acting_as(s, as_user, admin=False)
        with unit_of_work(s, who):
            invitations.decline(s, who, invitation)
    say(f"invitation {invitation} declined")


@invitation_app.command("revoke")
def invitation_revoke(ctx: typer.Context, invitation: int, as_user: str | None = AsOpt) -> None:
    """Withdraw a pending invitation (the organisation's org_admins, or the operator)."""
    with session_of(ctx) as s:
        who = _who(s, as_user)
        with unit_of_work(s, who):
            invitations.revoke(s, who, invitation)
    say(f"invitation {invitation} revoked")
