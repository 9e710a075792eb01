"""HTTP API of identity: who am I, organisations, users, memberships, invitations, API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from sovstack.core import identity, invitations
from sovstack.core.api.deps import PrincipalDep, SessionDep
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    InvitationCreate,
    InvitationPublic,
    Me,
    MembershipCreate,
    MembershipPublic,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from sovstack.core.tables import User

router = APIRouter(prefix="/api/v1", tags=["identity"])


def user_public(user: User, who: Principal) -> UserPublic:
    """The user as ``who`` may see them: memberships elsewhere only for a deployment admin or themselves."""
    return UserPublic(
        id=user.id, email=user.email, name=user.name, is_admin=user.is_admin, is_active=user.is_active,
        created_at=user.created_at,
        memberships=[MembershipPublic(organisation_id=m.organisation_id, organisation=m.organisation.name,
                                      role=m.role) for m in identity.visible_memberships(who, user)])


@router.get("/me")
def me(session: SessionDep, who: PrincipalDep) -> Me:
    user = identity.get_user(session, who.user_id) if who.user_id else None
    return Me(user=user_public(user, who) if user else None, actor=who.actor, is_admin=who.is_admin,
              scopes=sorted(who.scopes), key_prefix=who.key_prefix, organisation_id=who.organisation_id)


@router.get("/organisations")
def list_organisations(session: SessionDep, who: PrincipalDep) -> list[OrganisationPublic]:
    return [OrganisationPublic.model_validate(o) for o in identity.list_organisations(session)]


@router.post("/organisations", status_code=status.HTTP_201_CREATED)
def create_organisation(body: OrganisationCreate, session: SessionDep, who: PrincipalDep) -> OrganisationPublic:
    with unit_of_work(session, who):
        org = identity.create_organisation(session, who, body)
    return OrganisationPublic.model_validate(org)


@router.get("/organisations/{org_id}")
def get_organisation(org_id: int, session: SessionDep, who: PrincipalDep) -> OrganisationPublic:
    return OrganisationPublic.model_validate(identity.get_organisation(session, org_id))


@router.patch("/organisations/{org_id}")
def update_organisation(org_id: int, body: OrganisationUpdate, session: SessionDep,
                        who: PrincipalDep) -> OrganisationPublic:
    with unit_of_work(session, who):
        org = identity.update_organisation(session, who, org_id, body)
    return OrganisationPublic.model_validate(org)


@router.get("/users")
def list_users(session: SessionDep, who: PrincipalDep) -> list[UserPublic]:
    return [user_public(u, who) for u in identity.list_users(session, who)]


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, session: SessionDep, who: PrincipalDep) -> UserPublic:
    with unit_of_work(session, who):
        user = identity.create_user(session, who, body)
    return user_public(identity.get_user(session, user.id), who)


@router.patch("/users/{user_id}")
def update_user(user_id: int, body: UserUpdate, request: Request, session: SessionDep,
                who: PrincipalDep) -> UserPublic:
    """Change a user; a new password needs ``current_password`` (unless an admin sets it) and ends the
    user's other console sessions."""
    console = getattr(request.state, "console_session", None)
    with unit_of_work(session, who):
        user = identity.update_user(session, who, user_id, body, keep_session=console.id if console else None)
    return user_public(user, who)


@router.post("/users/{user_id}/unlock")
def unlock_user(user_id: int, session: SessionDep, who: PrincipalDep) -> UserPublic:
    """Lift the login limit on an account now (admin)."""
    with unit_of_work(session, who):
        user = identity.unlock(session, who, user_id)
    return user_public(user, who)


@router.post("/memberships", status_code=status.HTTP_201_CREATED)
def add_membership(body: MembershipCreate, session: SessionDep, who: PrincipalDep) -> MembershipPublic:
    """Add a member directly (deployment admins), or another role to a member (org_admins)."""
    with unit_of_work(session, who):
        m = identity.add_membership(session, who, body)
    return MembershipPublic(organisation_id=m.organisation_id, organisation=m.organisation.name, role=m.role)


@router.delete("/memberships", status_code=status.HTTP_204_NO_CONTENT)
def remove_membership(body: MembershipCreate, session: SessionDep, who: PrincipalDep) -> None:
    with unit_of_work(session, who):
        identity.remove_membership(session, who, body)


@router.post("/organisations/{org_id}/invitations", status_code=status.HTTP_201_CREATED)
def invite(org_id: int, body: InvitationCreate, session: SessionDep, who: PrincipalDep) -> InvitationPublic:
    """Invite an email address to a role (the organisation's org_admins); the person accepts or declines."""
    with unit_of_work(session, who):
        inv = invitations.invite(session, who, org_id, body)
        return invitations.public(inv)


@router.get("/organisations/{org_id}/invitations")
def organisation_invitations(org_id: int, session: SessionDep, who: PrincipalDep,
                             all: bool = False) -> list[InvitationPublic]:
    """The organisation's pending invitations, or with `all` every one (its org_admins)."""
    with unit_of_work(session, who):
        return [invitations.public(i) for i in invitations.of_organisation(session, who, org_id, everything=all)]


@router.get("/invitations")
def my_invitations(session: SessionDep, who: PrincipalDep) -> list[InvitationPublic]:
    """The pending invitations sent to your own email address."""
    return [invitations.public(i) for i in invitations.mine(session, who)]


@router.post("/invitations/{invitation_id}/accept")
def accept_invitation(invitation_id: int, session: SessionDep, who: PrincipalDep) -> MembershipPublic:
    """Accept an invitation sent to you: from now on you hold its role in its organisation."""
    with unit_of_work(session, who):
        m = invitations.accept(session, who, invitation_id)
        return MembershipPublic(organisation_id=m.organisation_id, organisation=m.organisation.name, role=m.role)


@router.post("/invitations/{invitation_id}/decline")
def decline_invitation(invitation_id: int, session: SessionDep, who: PrincipalDep) -> InvitationPublic:
    """Decline an invitation sent to you."""
    with unit_of_work(session, who):
        return invitations.public(invitations.decline(session, who, invitation_id))


@router.post("/invitations/{invitation_id}/revoke")
def revoke_invitation(invitation_id: int, session: SessionDep, who: PrincipalDep) -> InvitationPublic:
    """Withdraw a pending invitation (the organisation's org_admins)."""
    with unit_of_work(session, who):
        return invitations.public(invitations.revoke(session, who, invitation_id))


@router.get("/keys")
def list_keys(session: SessionDep, who: PrincipalDep, all: bool = False) -> list[ApiKeyPublic]:
    return [ApiKeyPublic.model_validate(k) for k in identity.list_api_keys(session, who, all_users=all)]


@router.post("/keys", status_code=status.HTTP_201_CREATED)
def create_key(body: ApiKeyCreate, request: Request, session: SessionDep, who: PrincipalDep) -> ApiKeyCreated:
    with unit_of_work(session, who):
        key, secret = identity.create_api_key(session, who, body, request.app.state.scopes)
    return ApiKeyCreated(**ApiKeyPublic.model_validate(key).model_dump(), key=secret)


@router.delete("/keys/{key_ref}")
def revoke_key(key_ref: str, session: SessionDep, who: PrincipalDep) -> ApiKeyPublic:
    ref: int | str = int(key_ref) if key_ref.isdigit() else key_ref
    with unit_of_work(session, who):
        key = identity.revoke_api_key(session, who, ref)
    return ApiKeyPublic.model_validate(key)
