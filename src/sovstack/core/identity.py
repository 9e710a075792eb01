"""Organisations, users, memberships, API keys and console sessions: the rules, in one place."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from sovstack.core import audit
from sovstack.core.base import utcnow
from sovstack.core.context import CORE_SCOPES, Principal
from sovstack.core.db import flush_unique
from sovstack.core.errors import BadInput, Conflict, NotFound, RateLimited, Refused, Unauthenticated
from sovstack.core.schemas import (
    ApiKeyCreate,
    MembershipCreate,
    OrganisationCreate,
    OrganisationUpdate,
    UserCreate,
    UserUpdate,
)
from sovstack.core.tables import ApiKey, ConsoleSession, LoginThrottle, Membership, Organisation, User

KEY_PREFIX = "sk-"
_THROTTLE: Table = LoginThrottle.__table__  # type: ignore[assignment]
_hasher = PasswordHasher()  # immutable parameters, safe to share


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# Organisations ---------------------------------------------------------------------------------

def list_organisations(session: Session) -> list[Organisation]:
    return list(session.scalars(select(Organisation).order_by(Organisation.name)))


def get_organisation(session: Session, ref: int | str) -> Organisation:
    """By id, or by exact name."""
    org = session.get(Organisation, ref) if isinstance(ref, int) else session.scalar(
        select(Organisation).where(Organisation.name == ref))
    if org is None:
        raise NotFound(f"no organisation {ref!r}", field="organisation")
    return org


def create_organisation(session: Session, who: Principal, data: OrganisationCreate) -> Organisation:
    who.require_admin("identity.organisation.create", data.name)
    org = Organisation(**data.model_dump())
    session.add(org)
    flush_unique(session, "organisation", "name", data.name)
    audit.record(session, actor=who.actor, action="identity.organisation.create", target=f"organisation:{org.id}",
                 detail=data.model_dump())
    return org


def update_organisation(session: Session, who: Principal, org_id: int, data: OrganisationUpdate) -> Organisation:
    org = get_organisation(session, org_id)
    who.require_role(org.id, "org_admin", action="identity.organisation.update", target=f"organisation:{org.id}")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    for key, value in changes.items():
        setattr(org, key, value)
    flush_unique(session, "organisation", "name", changes.get("name", org.name))
    audit.record(session, actor=who.actor, action="identity.organisation.update", target=f"organisation:{org.id}",
                 detail=changes)
    return org


# Users -----------------------------------------------------------------------------------------

def hash_password(password: str) -> str:
    return _hasher.hash(password)


def list_users(session: Session, who: Principal) -> list[User]:
    """Admins see everyone; others see themselves and the people of the organisations they belong to.

    Show each one's memberships through ``visible_memberships``: not every one of them is ``who``'s to see.
    """
    q = select(User).options(selectinload(User.memberships).selectinload(Membership.organisation))
    if not who.acts_as_admin:
        q = q.where(User.id.in_(select(Membership.user_id).where(Membership.organisation_id.in_(who.roles)))
                    | (User.id == who.user_id))
    return list(session.scalars(q.order_by(User.email)))


def visible_memberships(who: Principal, user: User) -> list[Membership]:
    """The memberships of ``user`` that ``who`` may see: all of them for a deployment admin and for the user
    themselves, else only those in organisations ``who`` belongs to (where else a person works is theirs)."""
    if who.acts_as_admin or who.user_id == user.id:
        return list(user.memberships)
    return [m for m in user.memberships if m.organisation_id in who.roles]


def get_user(session: Session, ref: int | str) -> User:
    """By id, or by email."""
    user = session.get(User, ref) if isinstance(ref, int) else session.scalar(
        select(User).where(User.email == ref.lower()))
    if user is None:
        raise NotFound(f"no user {ref!r}", field="user")
    return user


def create_user(session: Session, who: Principal, data: UserCreate) -> User:
    who.require_admin("identity.user.create", data.email)
    user = User(email=data.email, name=data.name, is_admin=data.is_admin,
                password_hash=hash_password(data.password) if data.password else None)
    session.add(user)
    flush_unique(session, "user with email", "email", data.email)
    audit.record(session, actor=who.actor, action="identity.user.create", target=f"user:{user.id}",
                 detail={"email": user.email, "is_admin": user.is_admin})
    return user


def update_user(session: Session, who: Principal, user_id: int, data: UserUpdate,
                keep_session: int | None = None) -> User:
    """Change a user. Their own name and password anyone may change (the password only with the current
    one: a key or a stolen session must not be enough); the rest, and others' passwords, an admin. A new
    password ends every other console session of the user (``keep_session``: the one making the change)."""
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    changes.pop("current_password", None)
    target = f"user:{user_id}"
    own_fields = {"name", "password"}
    # Rights before existence: a refusal must not tell a stranger which user ids exist.
    if not (who.user_id == user_id and set(changes) <= own_fields):
        who.require_admin("identity.user.update", target)
    user = get_user(session, user_id)
    if "password" in changes and not who.acts_as_admin and not (
            data.current_password and _password_ok(user, data.current_password)):
        raise Refused("give your current password to set a new one", action="identity.user.password",
                      target=target, reasons=["current_password is missing or wrong"])
    if user.is_admin and user.is_active and (changes.get("is_admin") is False or changes.get("is_active") is False):
        _keep_an_admin(session, user)
    if "password" in changes:
        user.password_hash = hash_password(changes.pop("password"))
        user.failed_logins, user.locked_until = 0, None
        changes["password"] = "(changed)"
        ended = session.execute(delete(ConsoleSession).where(
            ConsoleSession.user_id == user.id, ConsoleSession.id != (keep_session or 0)))
        changes["sessions_ended"] = ended.rowcount  # type: ignore[attr-defined]
    for key in ("name", "is_admin", "is_active"):
        if key in changes:
            setattr(user, key, changes[key])
    if changes.get("is_active") is False:
        session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
    audit.record(session, actor=who.actor, action="identity.user.update", target=target, detail=changes)
    return user


def _keep_an_admin(session: Session, user: User) -> None:
    """Refuse taking away the last active admin: nobody could then manage the deployment."""
    others = session.scalar(select(func.count()).select_from(User).where(
        User.is_admin.is_(True), User.is_active.is_(True), User.id != user.id))
    if not others:
        raise Conflict(f"{user.email} is the only active deployment admin: make another admin first",
                       field="is_admin")


def add_membership(session: Session, who: Principal, data: MembershipCreate) -> Membership:
    """A deployment admin adds anyone; an org_admin only gives another role to someone already in their
    organisation. Newcomers join by accepting an invitation (``core/invitations.py``)."""
    org = get_organisation(session, data.organisation_id)
    target = f"organisation:{org.id}"
    who.require_role(org.id, "org_admin", action="identity.membership.add", target=target)
    if not who.acts_as_admin and not _is_member(session, data.user_id, org.id):
        # The same answer whether or not the user id exists: ids are not to be probed.
        raise Refused("a person joins an organisation by accepting an invitation: invite them by email",
                      action="identity.membership.add", target=target,
                      reasons=[f"user {data.user_id} is not a member of {org.name}; only a deployment admin "
                               "adds people to an organisation directly"])
    user = get_user(session, data.user_id)
    found = session.scalar(select(Membership).where(
        Membership.user_id == user.id, Membership.organisation_id == org.id, Membership.role == data.role))
    if found is not None:
        raise Conflict(f"{user.email} already holds {data.role} in {org.name}", field="role")
    membership = Membership(user_id=user.id, organisation_id=org.id, role=data.role)
    session.add(membership)
    session.flush()
    audit.record(session, actor=who.actor, action="identity.membership.add", target=target,
                 detail={"user": user.email, "role": data.role})
    return membership


def remove_membership(session: Session, who: Principal, data: MembershipCreate) -> None:
    target = f"organisation:{data.organisation_id}"
    who.require_role(data.organisation_id, "org_admin", action="identity.membership.remove", target=target)
    found = session.scalar(select(Membership).where(
        Membership.user_id == data.user_id, Membership.organisation_id == data.organisation_id,
        Membership.role == data.role))
    if found is None:
        raise NotFound("no such membership", field="role")
    session.delete(found)
    audit.record(session, actor=who.actor, action="identity.membership.remove", target=target,
                 detail={"user_id": data.user_id, "role": data.role})


def _is_member(session: Session, user_id: int, organisation_id: int) -> bool:
    return session.scalar(select(Membership.id).where(
        Membership.user_id == user_id, Membership.organisation_id == organisation_id).limit(1)) is not None


def memberships_of(session: Session, user_id: int) -> dict[int, frozenset[str]]:
    roles: dict[int, set[str]] = {}
    for org_id, role in session.execute(
        select(Membership.organisation_id, Membership.role).where(Membership.user_id == user_id)
    ):
        roles.setdefault(org_id, set()).add(role)
    return {k: frozenset(v) for k, v in roles.items()}


def principal_for(session: Session, user: User, *, scopes: Iterable[str] = ("*",),
                  key: ApiKey | None = None) -> Principal:
    return Principal(
        user_id=user.id, email=user.email, is_admin=user.is_admin,
        roles=memberships_of(session, user.id), scopes=frozenset(scopes),
        key_prefix=key.prefix if key else None, organisation_id=key.organisation_id if key else None,
    )


# API keys --------------------------------------------------------------------------------------

def create_api_key(session: Session, who: Principal, data: ApiKeyCreate,
                   known_scopes: Iterable[str] = CORE_SCOPES) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored or shown again."""
    owner_id = data.user_id if data.user_id is not None else who.user_id
    if owner_id is None:
        raise BadInput("user_id is required when acting as the local operator", field="user_id")
    if owner_id != who.user_id:
        who.require_admin("identity.key.create", f"user:{owner_id}")
    owner = get_user(session, owner_id)
    unknown = sorted(set(data.scopes) - set(known_scopes))
    if unknown:
        raise BadInput(f"unknown scopes {unknown}; known: {sorted(known_scopes)}", field="scopes")
    if "admin" in data.scopes and not owner.is_admin:
        raise BadInput("only a deployment admin's key may carry the admin scope", field="scopes")
    if who.key_prefix and not set(data.scopes) <= who.scopes and "*" not in who.scopes:
        raise Refused("a key cannot create a key with more scopes than it has", action="identity.key.create",
                      reasons=[f"asked {sorted(data.scopes)}, holds {sorted(who.scopes)}"])
    if data.organisation_id is not None:
        org = get_organisation(session, data.organisation_id)
        if not who.acts_as_admin and org.id not in memberships_of(session, owner.id):
            raise BadInput(f"{owner.email} is not a member of {org.name}", field="organisation_id")
    prefix = KEY_PREFIX + secrets.token_hex(4)
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    expires = utcnow() + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    key = ApiKey(prefix=prefix, key_hash=_sha(secret), name=data.name, user_id=owner.id,
                 organisation_id=data.organisation_id, scopes=sorted(set(data.scopes)), expires_at=expires)
    session.add(key)
    session.flush()
    audit.record(session, actor=who.actor, action="identity.key.create", target=f"key:{prefix}",
                 detail={"name": data.name, "user": owner.email, "scopes": key.scopes,
                         "expires_at": expires.isoformat() if expires else None})
    return key, secret


def list_api_keys(session: Session, who: Principal, *, all_users: bool = False) -> list[ApiKey]:
    q = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if all_users:
        who.require_admin("identity.key.list")
    else:
        q = q.where(ApiKey.user_id == who.user_id)
    return list(session.scalars(q))


def get_api_key(session: Session, ref: int | str) -> ApiKey:
    key = session.get(ApiKey, ref) if isinstance(ref, int) else session.scalar(
        select(ApiKey).where(ApiKey.prefix == ref))
    if key is None:
        raise NotFound(f"no API key {ref!r}", field="key")
    return key


def revoke_api_key(session: Session, who: Principal, ref: int | str) -> ApiKey:
    key = get_api_key(session, ref)
    if key.user_id != who.user_id:
        who.require_admin("identity.key.revoke", f"key:{key.prefix}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(session, actor=who.actor, action="identity.key.revoke", target=f"key:{key.prefix}")
    return key


# The key, its owner and the owner's memberships (one row each, or one with no membership) in one statement:
# this runs on every API and gateway request, and a second query for the roles cost as much as the first.
_KEY_BY_PREFIX = (select(ApiKey.id, ApiKey.key_hash, ApiKey.scopes, ApiKey.expires_at, ApiKey.revoked_at,
                         ApiKey.last_used_at, ApiKey.organisation_id, User.id, User.email, User.is_admin,
                         User.is_active, Membership.organisation_id, Membership.role)
                  .join(User, ApiKey.user_id == User.id)
                  .outerjoin(Membership, Membership.user_id == User.id)
                  .where(ApiKey.prefix == bindparam("prefix")))


def authenticate_key(session: Session, token: str, touch_seconds: int = 60) -> Principal:
    """The principal a bearer key stands for, with its owner's roles; Unauthenticated when unknown, expired
    or revoked.

    The roles are always read, even for the model gateway: its calls are bound to an organisation the
    owner still belongs to, whichever key they use.
    """
    prefix = token.split("_", 1)[0]
    if not token.startswith(KEY_PREFIX) or prefix == token:
        raise Unauthenticated("malformed API key: expected 'Authorization: Bearer sk-…'")
    # Columns, not entities: this runs on every API and gateway request.
    rows = session.connection().execute(_KEY_BY_PREFIX, {"prefix": prefix}).all()  # Core: no ORM state
    if not rows or not hmac.compare_digest(rows[0].key_hash, _sha(token)):
        raise Unauthenticated("invalid API key")
    key_id, _, scopes, expires_at, revoked_at, last_used_at, org_id, user_id, email, is_admin, is_active, *_ = rows[0]
    roles: dict[int, set[str]] = {}
    for *_, member_of, role in rows:
        if member_of is not None:
            roles.setdefault(member_of, set()).add(role)
    now = utcnow()
    if revoked_at is not None:
        raise Unauthenticated(f"API key {prefix} was revoked")
    if expires_at is not None and expires_at <= now:
        raise Unauthenticated(f"API key {prefix} expired at {expires_at.isoformat()}Z")
    if not is_active:
        raise Unauthenticated(f"the account of key {prefix} is disabled")
    if last_used_at is None or now - last_used_at >= timedelta(seconds=touch_seconds):
        # A conditional update, so concurrent requests do not all write.
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        session.commit()
    return Principal(user_id=user_id, email=email, is_admin=is_admin,
                     roles={k: frozenset(v) for k, v in roles.items()},
                     scopes=frozenset(scopes), key_prefix=prefix, organisation_id=org_id)


# Console sessions --------------------------------------------------------------------------------

def login(session: Session, email: str, password: str, *, max_failures: int, lockout_seconds: int,
          max_age: int, client: str = "", max_per_client: int = 0) -> tuple[str, ConsoleSession]:
    """Check a password and open a console session, within the login limits.

    Every attempt on an address is counted (one upsert, committed) before its password is checked, so
    parallel guesses cannot slip past ``max_failures`` in a window of ``lockout_seconds``; an address
    with no account is counted and answered exactly like one with, so a refusal says nothing about
    which accounts exist. Failures from one client address are capped at ``max_per_client``.
    """
    address, now = email.strip().lower(), utcnow()
    window = str(int(now.timestamp()) // lockout_seconds)
    wait = lockout_seconds - int(now.timestamp()) % lockout_seconds
    account, source = f"email:{_sha(address)[:40]}", f"ip:{client[:90]}"
    attempts = _count_attempt(session, account, window)
    from_client = _attempts(session, source, window) if client and max_per_client else 0
    session.commit()
    if attempts > max_failures or (max_per_client and from_client >= max_per_client):
        audit.record(session, actor=address[:320] or "(blank)", action="identity.login", outcome="refused",
                     reasons=["too many login attempts"], detail={"client": client})
        session.commit()
        raise RateLimited(f"too many login attempts; try again in {wait} s", retry_after=wait)
    user = session.scalar(select(User).where(User.email == address))
    if user is None or not user.password_hash or not user.is_active or not _password_ok(user, password):
        if client and max_per_client:
            _count_attempt(session, source, window)
        audit.record(session, actor=address[:320] or "(blank)", action="identity.login",
                     outcome="refused", reasons=["wrong email or password"], detail={"client": client})
        session.commit()
        raise Unauthenticated("wrong email or password")
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == account))  # a success starts afresh
    token = secrets.token_urlsafe(32)
    console = ConsoleSession(token_hash=_sha(token), csrf_token=secrets.token_urlsafe(24), user_id=user.id,
                             expires_at=now + timedelta(seconds=max_age))
    session.add(console)
    audit.record(session, actor=user.email, action="identity.login", target=f"user:{user.id}")
    session.commit()
    return token, console


def unlock(session: Session, who: Principal, user_id: int) -> User:
    """An admin lifts the login limit on an account at once (rather than waiting for the window)."""
    user = get_user(session, user_id)
    who.require_admin("identity.user.unlock", f"user:{user.id}")
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == f"email:{_sha(user.email)[:40]}"))
    user.failed_logins, user.locked_until = 0, None
    audit.record(session, actor=who.actor, action="identity.user.unlock", target=f"user:{user.id}")
    return user


def _count_attempt(session: Session, key: str, window: str) -> int:
    """One more attempt on ``key`` in ``window``, atomically; the new count."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt: Any = insert(_THROTTLE).values(key=key, window=window, count=1)
    stmt = stmt.on_conflict_do_update(index_elements=["key", "window"],
                                      set_={"count": _THROTTLE.c.count + 1}).returning(_THROTTLE.c.count)
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key, LoginThrottle.window != window))
    return int(session.execute(stmt).scalar_one())


def _attempts(session: Session, key: str, window: str) -> int:
    return int(session.scalar(select(LoginThrottle.count).where(LoginThrottle.key == key,
                                                                LoginThrottle.window == window)) or 0)


def _password_ok(user: User, password: str) -> bool:
    try:
        _hasher.verify(user.password_hash or "", password)
    except (VerificationError, InvalidHashError):
        return False
    return True


def _count_failure(session: Session, user: User, max_failures: int, lockout_seconds: int) -> None:
    user.failed_logins += 1
    if user.failed_logins >= max_failures:
        user.locked_until = utcnow() + timedelta(seconds=lockout_seconds)
        user.failed_logins = 0


def console_session(session: Session, token: str) -> tuple[ConsoleSession, Principal]:
    found = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == _sha(token)))
    if found is None or found.expires_at <= utcnow() or not found.user.is_active:
        raise Unauthenticated("your console session has ended; log in again")
    return found, principal_for(session, found.user)


def logout(session: Session, token: str) -> None:
    found = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == _sha(token)))
    if found is not None:
        audit.record(session, actor=found.user.email, action="identity.logout", target=f"user:{found.user_id}")
        session.delete(found)
        session.commit()
