"""Dependencies every API handler reads like a sentence with: SessionDep, PrincipalDep, SettingsDep."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from sovstack.core import identity
from sovstack.core.context import Principal
from sovstack.core.errors import Refused, Unauthenticated
from sovstack.core.settings import Settings

SESSION_COOKIE = "sovstack_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def cookie_signer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_key(), salt="sovstack-console-session")


def session_token(request: Request) -> str | None:
    """The console session token from the signed cookie, or None when absent or forged."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    settings: Settings = request.app.state.settings
    try:
        token: str = cookie_signer(settings).loads(raw, max_age=settings.session_max_age)
    except BadSignature:
        return None
    return token


def authenticate(request: Request, session: Session) -> Principal:
    """A bearer API key, else a console session (which must send its CSRF token to change state)."""
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("expected 'Authorization: Bearer sk-…'")
        return identity.authenticate_key(session, token.strip(), settings.api_key_touch_seconds)
    cookie_token = session_token(request)
    if cookie_token is None:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer sk-…'")
    console, principal = identity.console_session(session, cookie_token)
    if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != console.csrf_token:
        raise Refused("missing or wrong CSRF token", reasons=["send the X-CSRF-Token header of your session"])
    return principal


def get_principal(request: Request, session: SessionDep) -> Principal:
    principal = authenticate(request, session)
    request.state.principal = principal
    scope = "read" if request.method in SAFE_METHODS else "write"
    _require(principal, scope, request)
    return principal


def _require(principal: Principal, scope: str, request: Request) -> None:
    if not principal.has_scope(scope):
        raise Refused(f"this API key lacks the {scope} scope", action="auth.scope",
                      target=f"{request.method} {request.url.path}",
                      reasons=[f"key {principal.key_prefix} has scopes {sorted(principal.scopes)}"])


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_visitor(request: Request, session: SessionDep) -> Principal | None:
    """The principal, or None for a visitor without credentials where the operator allows anonymous
    browsing of open data (``anonymous_browsing``); otherwise the same as ``PrincipalDep``."""
    settings: Settings = request.app.state.settings
    if settings.anonymous_browsing and not request.headers.get("authorization") \
            and SESSION_COOKIE not in request.cookies:
        return None
    return get_principal(request, session)


VisitorDep = Annotated[Principal | None, Depends(get_visitor)]


def scoped(scope: str) -> Any:
    """A dependency: any authenticated principal holding ``scope``, instead of read/write by HTTP method.

    For routes whose POST changes nothing (the assessor analyses the document it is sent) or that a
    machine key of one purpose calls (a provider reporting usage with ``compute.report`` only).
    """

    def check(request: Request, session: SessionDep) -> Principal:
        principal = authenticate(request, session)
        request.state.principal = principal
        _require(principal, scope, request)
        return principal

    return Depends(check)


def require_scope(scope: str) -> Any:
    """A dependency for module routers that need a scope of their own (e.g. ``gateway``)."""

    def check(principal: PrincipalDep, request: Request) -> Principal:
        _require(principal, scope, request)
        return principal

    return Depends(check)
