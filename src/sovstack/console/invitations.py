"""Console pages of invitations: a person's own invitations to answer, an org_admin's to send and revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from sovstack.console.auth import ConsolePoster, ConsoleUser
from sovstack.console.routes import FormStr, console_of, organisation_page, parse, see_other
from sovstack.core import invitations
from sovstack.core.api.deps import SessionDep
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.errors import BadInput, Refused, SovstackError
from sovstack.core.schemas import InvitationCreate
from sovstack.core.tables import Invitation

router = APIRouter(include_in_schema=False)
FormErrors = (BadInput, Refused)


def invitations_page(request: Request, session: Session, who: Principal, *,
                     error: SovstackError | None = None) -> HTMLResponse:
    mine = invitations.mine(session, who) if who.user_id is not None else []
    return console_of(request).page(request, "invitations.html", error.status if error else 200,
                                    invitations=mine, error=error)


@router.get("/invitations")
def my_invitations(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    return invitations_page(request, session, user[1])


def _answer(request: Request, session: Session, who: Principal, invitation_id: int, accept: bool) -> Response:
    try:
        with unit_of_work(session, who):
            if accept:
                m = invitations.accept(session, who, invitation_id)
                done = f"You are now {m.role.replace('_', ' ')} in {m.organisation.name}."
            else:
                invitations.decline(session, who, invitation_id)
                done = "Invitation declined."
    except FormErrors as exc:
        return invitations_page(request, session, who, error=exc)
    return see_other("/invitations", done)


@router.post("/invitations/{invitation_id}/accept")
def accept(request: Request, invitation_id: int, session: SessionDep, user: ConsolePoster) -> Response:
    return _answer(request, session, user[1], invitation_id, accept=True)


@router.post("/invitations/{invitation_id}/decline")
def decline(request: Request, invitation_id: int, session: SessionDep, user: ConsolePoster) -> Response:
    return _answer(request, session, user[1], invitation_id, accept=False)


@router.post("/organisations/{org_id}/invitations")
def invite(request: Request, org_id: int, session: SessionDep, user: ConsolePoster, email: FormStr = "",
           role: FormStr = "", expires_in_days: FormStr = "") -> Response:
    form = {"email": email, "role": role, "expires_in_days": expires_in_days or 14}
    try:
        data = parse(InvitationCreate, **form)
        with unit_of_work(session, user[1]):
            inv = invitations.invite(session, user[1], org_id, data)
            done = f"Invitation sent to {inv.email} ({inv.role.replace('_', ' ')})."
    except FormErrors as exc:
        return organisation_page(request, session, user[1], org_id, error=exc, form=form)
    return see_other(f"/organisations/{org_id}", done)


@router.post("/invitations/{invitation_id}/revoke")
def revoke(request: Request, invitation_id: int, session: SessionDep, user: ConsolePoster) -> Response:
    try:
        with unit_of_work(session, user[1]):
            inv = invitations.revoke(session, user[1], invitation_id)
            org_id, email = inv.organisation_id, inv.email
    except FormErrors as exc:
        found = session.get(Invitation, invitation_id)
        if found is None:
            return invitations_page(request, session, user[1], error=exc)
        return organisation_page(request, session, user[1], found.organisation_id, error=exc)
    return see_other(f"/organisations/{org_id}", f"Invitation of {email} revoked.")
