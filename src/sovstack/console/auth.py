"""Who is using the console: the signed session cookie, and CSRF checks on every form post."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request

from sovstack.core import identity
from sovstack.core.api.deps import SessionDep, session_token
from sovstack.core.context import Principal
from sovstack.core.errors import Refused, Unauthenticated
from sovstack.core.tables import ConsoleSession

LOGIN_CSRF_COOKIE = "sovstack_login_csrf"


@dataclass(frozen=True)
class SignedIn:
    """What every page shows of the signed-in user, read once: a page rendered for an error comes after
    the request's database session has rolled back and closed, when ORM rows can no longer load."""

    name: str
    email: str
    csrf_token: str


def console_user(request: Request, session: SessionDep) -> tuple[ConsoleSession, Principal]:
    """The console session and principal of the signed cookie; Unauthenticated (→ /login) otherwise."""
    token = session_token(request)
    if token is None:
        raise Unauthenticated("please log in to use the console")
    console, principal = identity.console_session(session, token)
    request.state.signed_in = SignedIn(console.user.name, console.user.email, console.csrf_token)
    request.state.principal = principal
    return console, principal


ConsoleUser = Annotated[tuple[ConsoleSession, Principal], Depends(console_user)]


def console_visitor(request: Request, session: SessionDep) -> Principal | None:
    """The signed-in principal, or None for an anonymous visitor where the operator allows browsing
    open data (``anonymous_browsing``); otherwise a visitor is sent to log in."""
    if session_token(request) is None and request.app.state.settings.anonymous_browsing:
        return None
    return console_user(request, session)[1]


ConsoleVisitor = Annotated[Principal | None, Depends(console_visitor)]


def same_secret(given: str | None, expected: str | None) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(str(given), str(expected))


def check_csrf(form_value: str | None, console_session: ConsoleSession) -> None:
    """Refuse a form post whose hidden CSRF field does not match the session's token."""
    if not same_secret(form_value, console_session.csrf_token):
        raise Refused("missing or wrong CSRF token", action="console.csrf",
                      reasons=["the form was not sent from this console session; reload the page and retry"])


def console_poster(user: ConsoleUser,
                   csrf_token: Annotated[str, Form()] = "") -> tuple[ConsoleSession, Principal]:
    """A signed-in user whose form post carries the session's CSRF token."""
    check_csrf(csrf_token, user[0])
    return user


ConsolePoster = Annotated[tuple[ConsoleSession, Principal], Depends(console_poster)]


def new_login_csrf() -> str:
    """A fresh double-submit token for the login form (cookie and hidden field)."""
    return secrets.token_urlsafe(24)
