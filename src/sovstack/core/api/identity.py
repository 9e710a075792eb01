"""HTTP API of identity: who am I, organisations, users, memberships, API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from sovstack.core import identity
from sovstack.core.api.deps import PrincipalDep, SessionDep
from sovstack.core.context import unit_of_work
from sovstack.core.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
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


def user_public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id, email=user.email, name=user.name, is_admin=user.is_admin, is_active=user.is_active,
        created_at=user.created_at,
        memberships=[MembershipPublic(organisation_id=m.organisation_id, organisation=m.organisation.name,
                                      role=m.role) for m in user.memberships])


@router.get("/me")
def me(session: SessionDep, who: PrincipalDep) -> Me:
    user = identity.get_user(session, who.user_id) if who.user_id else None
    return Me(user=user_public(user) if user else None, actor=who.actor, is_admin=who.is_admin,
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
    return [user_public(u) for u in identity.list_users(session, who)]


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, session: SessionDep, who: PrincipalDep) -> UserPublic:
    with unit_of_work(session, who):
        user = identity.create_user(session, who, body)
    return user_public(identity.get_user(session, user.id))


@router.patch("/users/{user_id}")
def update_user(user_id: int, body: UserUpdate, request: Request, session: SessionDep,
                who: PrincipalDep) -> UserPublic:
    """Change a user; a new password needs ``current_password`` (unless an admin sets it) and ends the
    user's other console sessions."""
    console = getattr(request.state, "console_session", None)
    with unit_of_work(session, who):
        user = identity.update_user(session, who, user_id, body, keep_session=console.id if console else None)
    return user_public(user)


@router.post("/users/{user_id}/unlock")
def unlock_user(user_id: int, session: SessionDep, who: PrincipalDep) -> UserPublic:
    """Lift the login limit on an account now (admin)."""
    with unit_of_work(session, who):
        user = identity.unlock(session, who, user_id)
    return user_public(user)


@router.post("/memberships", status_code=status.HTTP_201_CREATED)
def add_membership(body: MembershipCreate, session: SessionDep, who: PrincipalDep) -> MembershipPublic:
    with unit_of_work(session, who):
        m = identity.add_membership(session, who, body)
    return MembershipPublic(organisation_id=m.organisation_id, organisation=m.organisation.name, role=m.role)


@router.delete("/memberships", status_code=status.HTTP_204_NO_CONTENT)
def remove_membership(body: MembershipCreate, session: SessionDep, who: PrincipalDep) -> None:
    with unit_of_work(session, who):
        identity.remove_membership(session, who, body)


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
