"""`sovstack org|user|key …`: identity from the shell, as the local operator."""

from __future__ import annotations

import typer

from sovstack.core import identity
from sovstack.core.cli.common import OPERATOR, JsonOpt, change, emit, emit_one, ref, say, session_of, state
from sovstack.core.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
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
    """Give a user a role in an organisation."""
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
