"""Request and response models of the core API, separate from the tables."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sovstack.core.base import UTCDateTime
from sovstack.core.jurisdictions import check_country

OrgKind = Literal["government", "academic", "startup", "enterprise", "provider", "civil_society"]
OrgRole = Literal["org_admin", "steward", "reviewer", "member"]
PartyKind = Literal[
    "operator", "compute_provider", "model_developer", "model_host", "storage_operator",
    "chip_vendor", "supplier", "network_operator", "software_vendor",
]


class Strict(BaseModel):
    """Input models refuse unknown fields, so a typo is an error, not a silent no-op; and numbers that
    are not numbers (NaN, Infinity: Python's JSON reader accepts them) are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _country(value: str) -> str:
    return check_country(value)


class OrganisationCreate(Strict):
    name: str = Field(min_length=2, max_length=200)
    kind: OrgKind
    jurisdiction: str = Field(min_length=2, max_length=2)
    description: str = Field("", max_length=5000)

    _j = field_validator("jurisdiction")(_country)


class OrganisationUpdate(Strict):
    name: str | None = Field(None, min_length=2, max_length=200)
    kind: OrgKind | None = None
    jurisdiction: str | None = Field(None, min_length=2, max_length=2)
    description: str | None = Field(None, max_length=5000)

    @field_validator("jurisdiction")
    @classmethod
    def _j(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value)


class OrganisationPublic(Public):
    id: int
    name: str
    kind: str
    jurisdiction: str
    description: str
    created_at: UTCDateTime


EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def _email_address(value: str) -> str:
    if not EMAIL.match(value):
        raise ValueError("not an email address (expected name@domain.tld)")
    return value.lower()


class UserCreate(Strict):
    email: str = Field(max_length=320)
    name: str = Field(min_length=1, max_length=200)
    password: str | None = Field(None, min_length=12, max_length=512)
    is_admin: bool = False

    _email = field_validator("email")(_email_address)


class UserUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    password: str | None = Field(None, min_length=12, max_length=512)
    current_password: str | None = Field(None, max_length=512, description="Required to change your own "
                                                                           "password (not for an admin).")
    is_admin: bool | None = None
    is_active: bool | None = None


class MembershipPublic(Public):
    organisation_id: int
    organisation: str
    role: str


class UserPublic(Public):
    id: int
    email: str
    name: str
    is_admin: bool
    is_active: bool
    created_at: UTCDateTime
    memberships: list[MembershipPublic] = []


class MembershipCreate(Strict):
    user_id: int
    organisation_id: int
    role: OrgRole


class InvitationCreate(Strict):
    email: str = Field(max_length=320, description="Whoever signs in with this address may accept.")
    role: OrgRole
    expires_in_days: int = Field(14, ge=1, le=90)

    _email = field_validator("email")(_email_address)


InvitationStatus = Literal["pending", "accepted", "declined", "revoked", "expired"]


class InvitationPublic(Public):
    id: int
    organisation_id: int
    organisation: str
    email: str
    role: str
    status: InvitationStatus
    invited_by: str
    created_at: UTCDateTime
    expires_at: UTCDateTime
    decided_at: UTCDateTime | None


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=lambda: ["read", "write"], min_length=1)
    organisation_id: int | None = None
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    user_id: int | None = Field(None, description="Admins may create a key for another user.")


class ApiKeyPublic(Public):
    id: int
    prefix: str
    name: str
    user_id: int
    organisation_id: int | None
    scopes: list[str]
    expires_at: UTCDateTime | None
    revoked_at: UTCDateTime | None
    last_used_at: UTCDateTime | None
    created_at: UTCDateTime


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The whole key. Shown this once; only its hash is stored.")


class PartyCreate(Strict):
    name: str = Field(min_length=2, max_length=200)
    kinds: list[PartyKind] = Field(min_length=1)
    jurisdiction: str
    ultimate_parent: str = Field("", max_length=200)
    parent_jurisdiction: str | None = None
    website: str = Field("", max_length=300)
    notes: str = Field("", max_length=5000)

    _j = field_validator("jurisdiction")(_country)

    @field_validator("parent_jurisdiction")
    @classmethod
    def _pj(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value, "parent_jurisdiction")


class PartyUpdate(Strict):
    kinds: list[PartyKind] | None = Field(None, min_length=1)
    jurisdiction: str | None = None
    ultimate_parent: str | None = Field(None, max_length=200)
    parent_jurisdiction: str | None = None
    website: str | None = Field(None, max_length=300)
    notes: str | None = Field(None, max_length=5000)

    @field_validator("jurisdiction", "parent_jurisdiction")
    @classmethod
    def _codes(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value)


class PartyPublic(Public):
    id: int
    name: str
    kinds: list[str]
    jurisdiction: str
    ultimate_parent: str
    parent_jurisdiction: str
    website: str
    notes: str
    created_at: UTCDateTime
    extraterritorial_laws: list[str] = []


class AuditEventPublic(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    target: str
    outcome: str
    reasons: list[str]
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class VerificationPublic(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str


class PolicyCheck(Strict):
    classification: Literal["open", "restricted", "sensitive"]
    action: Literal["process", "download", "sandbox"] = "process"
    party: str | None = Field(None, description="Name of the operating party (for process).")
    hosting_jurisdiction: str | None = None
    granted: bool = False

    @field_validator("hosting_jurisdiction")
    @classmethod
    def _h(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value, "hosting_jurisdiction")


class DecisionPublic(BaseModel):
    allowed: bool
    reasons: list[str]


class Me(BaseModel):
    user: UserPublic | None
    actor: str
    is_admin: bool
    scopes: list[str]
    key_prefix: str | None
    organisation_id: int | None
