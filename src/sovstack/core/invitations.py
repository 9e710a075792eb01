"""Invitations: how a person joins an organisation, with their consent.

An org_admin invites an email address to a role; whoever signs in with that address sees the invitation
and accepts or declines it; only an accepted invitation makes a membership. The org_admin never learns
whether the address has an account (an invitation is made the same way either way) and cannot add a
person by user id: only a deployment admin adds members directly. Every step is audited.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sovstack.core import audit
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused
from sovstack.core.identity import get_organisation, get_user
from sovstack.core.schemas import InvitationCreate, InvitationPublic, InvitationStatus
from sovstack.core.tables import Invitation, Membership, User


def status_of(inv: Invitation) -> InvitationStatus:
    """Its status, with a pending invitation past its time shown as expired."""
    if inv.status == "pending" and inv.expires_at <= utcnow():
        return "expired"
    return cast(InvitationStatus, inv.status)


def public(inv: Invitation) -> InvitationPublic:
    return InvitationPublic(
        id=inv.id, organisation_id=inv.organisation_id, organisation=inv.organisation.name, email=inv.email,
        role=inv.role, status=status_of(inv), invited_by=inv.invited_by, created_at=inv.created_at,
        expires_at=inv.expires_at, decided_at=inv.decided_at)


def invite(session: Session, who: Principal, organisation_id: int, data: InvitationCreate) -> Invitation:
    """Offer ``data.role`` in the organisation to whoever holds ``data.email`` (its org_admins only)."""
    org = get_organisation(session, organisation_id)
    target = f"organisation:{org.id}"
    who.require_role(org.id, "org_admin", action="identity.invitation.create", target=target)
    held = session.scalar(select(Membership.id).join(User).where(
        User.email == data.email, Membership.organisation_id == org.id, Membership.role == data.role))
    if held is not None:
        raise Conflict(f"{data.email} already holds {data.role} in {org.name}", field="email")
    pending = session.scalar(select(Invitation.id).where(
        Invitation.organisation_id == org.id, Invitation.email == data.email, Invitation.role == data.role,
        Invitation.status == "pending", Invitation.expires_at > utcnow()))
    if pending is not None:
        raise Conflict(f"{data.email} already has a pending invitation to {data.role} in {org.name} "
                       f"(invitation {pending})", field="email")
    inv = Invitation(organisation_id=org.id, email=data.email, role=data.role, status="pending",
                     invited_by=who.actor, expires_at=utcnow() + timedelta(days=data.expires_in_days))
    session.add(inv)
    session.flush()
    audit.record(session, actor=who.actor, action="identity.invitation.create", target=target,
                 detail={"invitation": inv.id, "email": inv.email, "role": inv.role,
                         "expires_at": inv.expires_at.isoformat()})
    return inv


def of_organisation(session: Session, who: Principal, organisation_id: int, *,
                    everything: bool = False) -> list[Invitation]:
    """The organisation's pending invitations (``everything``: decided and expired ones too), newest first."""
    org = get_organisation(session, organisation_id)
    who.require_role(org.id, "org_admin", action="identity.invitation.list", target=f"organisation:{org.id}")
    q = select(Invitation).where(Invitation.organisation_id == org.id).order_by(Invitation.id.desc())
    if not everything:
        q = q.where(Invitation.status == "pending", Invitation.expires_at > utcnow())
    return list(session.scalars(q))


def _me(session: Session, who: Principal) -> User:
    if who.user_id is None:
        raise BadInput("invitations are answered by the person invited, not by the local operator: use --as",
                       field="user")
    return get_user(session, who.user_id)


def mine(session: Session, who: Principal) -> list[Invitation]:
    """The pending invitations sent to the caller's own email address."""
    me = _me(session, who)
    return list(session.scalars(select(Invitation).where(
        Invitation.email == me.email, Invitation.status == "pending", Invitation.expires_at > utcnow())
        .order_by(Invitation.id.desc())))


def _get(session: Session, invitation_id: int) -> Invitation:
    inv = session.get(Invitation, invitation_id)
    if inv is None:
        raise NotFound(f"no invitation {invitation_id}", field="invitation")
    return inv


def _addressed_to_me(session: Session, who: Principal, inv: Invitation, action: str) -> User:
    me = _me(session, who)
    if inv.email != me.email:
        # Says nothing of the address it was sent to.
        raise Refused(f"invitation {inv.id} was not sent to you", action=action, target=f"invitation:{inv.id}",
                      reasons=[f"it is addressed to someone other than {me.email}"])
    return me


def _decide(session: Session, inv: Invitation, status: str) -> None:
    """Move a pending, unexpired invitation to ``status`` with one conditional update, so that of an accept
    and a revoke racing each other only one wins (the other reads a state that is no longer true)."""
    now = utcnow()
    moved = session.execute(update(Invitation).where(
        Invitation.id == inv.id, Invitation.status == "pending", Invitation.expires_at > now)
        .values(status=status, decided_at=now).execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(inv)
        raise Conflict(f"invitation {inv.id} is {status_of(inv)}; only a pending invitation can be answered or "
                       "revoked", field="invitation")
    session.refresh(inv)


def accept(session: Session, who: Principal, invitation_id: int) -> Membership:
    """Accept an invitation sent to one's own address: the membership exists from now on."""
    inv = _get(session, invitation_id)
    me = _addressed_to_me(session, who, inv, "identity.invitation.accept")
    _decide(session, inv, "accepted")
    membership = session.scalar(select(Membership).where(
        Membership.user_id == me.id, Membership.organisation_id == inv.organisation_id, Membership.role == inv.role))
    if membership is None:
        membership = Membership(user_id=me.id, organisation_id=inv.organisation_id, role=inv.role)
        session.add(membership)
        session.flush()
    audit.record(session, actor=who.actor, action="identity.invitation.accept",
                 target=f"organisation:{inv.organisation_id}",
                 detail={"invitation": inv.id, "user": me.email, "role": inv.role})
    return membership


def decline(session: Session, who: Principal, invitation_id: int) -> Invitation:
    """Decline an invitation sent to one's own address; it can no longer be accepted."""
    inv = _get(session, invitation_id)
    me = _addressed_to_me(session, who, inv, "identity.invitation.decline")
    _decide(session, inv, "declined")
    audit.record(session, actor=who.actor, action="identity.invitation.decline",
                 target=f"organisation:{inv.organisation_id}",
                 detail={"invitation": inv.id, "user": me.email, "role": inv.role})
    return inv


def revoke(session: Session, who: Principal, invitation_id: int) -> Invitation:
    """Withdraw a pending invitation (the organisation's org_admins); it can no longer be accepted."""
    inv = _get(session, invitation_id)
    target = f"organisation:{inv.organisation_id}"
    who.require_role(inv.organisation_id, "org_admin", action="identity.invitation.revoke", target=target)
    _decide(session, inv, "revoked")
    audit.record(session, actor=who.actor, action="identity.invitation.revoke", target=target,
                 detail={"invitation": inv.id, "email": inv.email, "role": inv.role})
    return inv
