"""Request and response models of the gateway's management API and catalogue files."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sovstack.core.base import UTCDateTime
from sovstack.core.jurisdictions import check_country
from sovstack.core.schemas import Strict

Level = Literal["open", "restricted", "sensitive"]
BCP47 = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")


class LanguageTag(Strict):
    code: str = Field(description="BCP-47 tag, e.g. hi, ta-IN, en.")
    tier: Literal["high", "medium", "low"] = "medium"

    @field_validator("code")
    @classmethod
    def _bcp47(cls, value: str) -> str:
        if not BCP47.match(value):
            raise ValueError("not a BCP-47 language tag (e.g. hi, ta-IN)")
        return value


class ModelCreate(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    description: str = Field("", max_length=2000)
    language_routing: bool = Field(False, description="Detect the prompt's language and prefer deployments "
                                                      "tagged for it.")


class ModelPublic(BaseModel):
    id: int
    name: str
    description: str
    language_routing: bool
    deployments: list[str]


class DeploymentCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(description="The logical model it serves.")
    backend: Literal["openai", "anthropic"] = Field(
        "openai", description="How the upstream is called: the OpenAI API, or the Anthropic Messages API.")
    base_url: str = Field(pattern=r"^https?://", max_length=500)
    upstream_model: str = Field(min_length=1, max_length=200)
    api_key: str | None = Field(None, max_length=2000, description="Encrypted at rest; never shown again.")
    hosting_jurisdiction: str
    operator: str = Field(description="Party that runs the server.")
    developer: str = Field(description="Party that made the model (its origin).")
    licence: str = Field("proprietary", max_length=100)
    open_weights: bool = False
    languages: list[LanguageTag] = []
    context_length: int = Field(8192, ge=1)
    price_in: float = Field(0.0, ge=0, le=1e9, description="Per million input tokens.")
    price_out: float = Field(0.0, ge=0, le=1e9, description="Per million output tokens.")
    priority: int = Field(100, ge=0, description="Lower is tried first.")
    weight: int = Field(1, ge=1, description="Share of traffic within equal priority.")
    timeout_seconds: float = Field(60.0, gt=0, le=3600)

    @field_validator("hosting_jurisdiction")
    @classmethod
    def _j(cls, value: str) -> str:
        return check_country(value, "hosting_jurisdiction")


class DeploymentPublic(BaseModel):
    id: int
    name: str
    model: str
    backend: str
    base_url: str
    upstream_model: str
    has_api_key: bool
    hosting_jurisdiction: str
    operator: str
    operator_jurisdiction: str
    operator_parent_jurisdiction: str
    developer: str
    developer_jurisdiction: str
    licence: str
    open_weights: bool
    languages: list[LanguageTag]
    context_length: int
    price_in: float
    price_out: float
    priority: int
    weight: int
    withdrawn: bool
    withdrawn_reason: str
    circuit: str = "closed"


class ModelEntry(ModelCreate):
    deployments: list[DeploymentEntry] = []


class DeploymentEntry(DeploymentCreate):
    model: str = ""


class Catalogue(Strict):
    """A YAML/JSON catalogue file: `sovstack gateway apply models.yaml`."""

    models: list[ModelEntry]


class KeyPolicySet(Strict):
    default_classification: Level = "open"
    floor_classification: Level = "open"
    requests_per_minute: int | None = Field(None, ge=1)


class OrgPolicySet(Strict):
    """An organisation's rules for every gateway call made for it, whichever of its members' keys makes it."""

    floor_classification: Level = Field("open", description="No call for the organisation is classified lower.")
    requests_per_minute_per_person: int | None = Field(None, ge=1, description="Counted per person across all "
                                                       "their keys.")
    tokens_per_person: int | None = Field(None, ge=0, le=10**15, description="Each person's share of tokens per "
                                          "period, across all their keys.")
    tokens_period: Literal["day", "month"] = "month"


class OrgPolicyPublic(BaseModel):
    """Everything that binds a gateway call made for an organisation: its policy, budget and logging."""

    organisation_id: int
    organisation: str
    floor_classification: str
    requests_per_minute_per_person: int | None
    tokens_per_person: int | None
    tokens_period: str
    budget_tokens: int | None = Field(description="The organisation's budget, set by a deployment admin.")
    budget_period: str | None
    transcripts_kept: bool
    retention_days: int | None


class BudgetSet(Strict):
    organisation_id: int
    tokens: int = Field(ge=0, le=10**15)
    period: Literal["day", "month"] = "month"


class CutoffRequest(Strict):
    jurisdiction: str | None = None
    party: str | None = None
    reason: str = Field("cut-off drill", max_length=300)

    @field_validator("jurisdiction")
    @classmethod
    def _j(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value)


class UsageRow(BaseModel):
    group: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost: float
    errors: int
    p50_latency_ms: float


class UsagePoint(BaseModel):
    day: str
    requests: int
    tokens: int
    cost: float


class UsageReport(BaseModel):
    since: UTCDateTime
    by: str
    rows: list[UsageRow]
    daily: list[UsagePoint]


ModelEntry.model_rebuild()


class OrgLoggingSet(Strict):
    """Opt an organisation in to keeping prompts and completions, for at most ``retention_days``."""

    enabled: bool
    retention_days: int = Field(30, ge=1, le=3650)


class TranscriptPublic(BaseModel):
    """A kept prompt and completion, as its organisation's admins may read it until it expires."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: UTCDateTime
    expires_at: UTCDateTime
    organisation_id: int
    key_prefix: str
    model: str
    deployment: str
    request: str
    response: str
