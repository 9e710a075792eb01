"""Request and response models of the gateway's management API and catalogue files."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from sovstack.core.base import UTCDateTime
from sovstack.core.jurisdictions import check_country
from sovstack.core.schemas import Strict
from sovstack.gateway import vertex

Level = Literal["open", "restricted", "sensitive"]
BCP47 = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")
LINE_BREAKS = {"\u2028", "\u2029", "\x85"}


def single_line(value: str) -> str:
    """Refuse control characters: these values end up in upstream request lines and headers (a CR/LF
    in an upstream key or URL would let a catalogue entry inject headers), in logs and in audit events."""
    for ch in value:
        if ch in LINE_BREAKS or unicodedata.category(ch) == "Cc":
            raise ValueError(f"must not contain control characters (found {ch!r}): one line of printable text")
    return value


# Names, URLs and keys: one line of printable text (checked here so catalogue files are covered too).
Line = Annotated[str, AfterValidator(single_line)]
CURRENCY = re.compile(r"^[A-Z]{3}$")
DEFAULT_CURRENCY = "USD"  # of a deployment's prices when none is given (and of prices entered before 0.x)
Period = Literal["day", "week", "month"]
ModelName = Annotated[str, Field(min_length=1, max_length=200)]
MAX_API_KEY_CHARS = 2000  # of an upstream key sent as it is (a vertex deployment's key is a JSON document)


def check_currency(value: str) -> str:
    """An ISO 4217 alphabetic code, upper-cased: ``EUR``, ``INR``."""
    code = value.strip().upper()
    if not CURRENCY.match(code):
        raise ValueError("not an ISO 4217 currency code (three letters, e.g. EUR, INR, USD)")
    return code


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
    name: Line = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    description: str = Field("", max_length=2000)
    language_routing: bool = Field(False, description="Detect the prompt's language and prefer deployments "
                                                      "tagged for it.")
    routing: Literal["priority", "least-busy", "latency"] = Field(
        "priority", description="How to choose among deployments of equal priority: weighted random, fewest "
                                "calls in flight, or lowest recent latency.")
    fallbacks: list[str] = Field([], max_length=5, description="Models whose deployments are tried, in this "
                                 "order, when every deployment of this one failed (each checked by policy).")

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a fallback is named twice")
        return value


class ModelPublic(BaseModel):
    id: int
    name: str
    description: str
    language_routing: bool
    enabled: bool = True
    deployments: list[str]
    routing: str = "priority"
    fallbacks: list[str] = []


class DeploymentCreate(Strict):
    name: Line = Field(min_length=1, max_length=200)
    model: Line = Field(description="The logical model it serves.")
    backend: Literal["openai", "anthropic", "azure", "bedrock", "vertex"] = Field(
        "openai", description="How the upstream is called: the OpenAI API, the Anthropic Messages API, Azure "
                              "OpenAI (base_url the resource's endpoint, upstream_model its deployment name), "
                              "Amazon Bedrock's Converse API (base_url https://bedrock-runtime.REGION.amazonaws.com, "
                              "upstream_model the model or inference profile id, api_key "
                              "[REGION/]ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]), or Vertex AI's "
                              "OpenAI-compatible endpoint (api_key a service-account key).")
    base_url: Line = Field(pattern=r"^https?://", max_length=500)
    upstream_model: Line = Field(min_length=1, max_length=200)
    api_key: str | None = Field(None, max_length=vertex.MAX_KEY_CHARS, description=(
        "Encrypted at rest; never shown again. One line of at most 2000 characters; for backend vertex, the "
        "service-account key file's JSON."))
    hosting_jurisdiction: str
    operator: Line = Field(description="Party that runs the server.")
    developer: Line = Field(description="Party that made the model (its origin).")
    licence: Line = Field("proprietary", max_length=100)
    open_weights: bool = False
    languages: list[LanguageTag] = []
    context_length: int = Field(8192, ge=1)
    price_in: float = Field(0.0, ge=0, le=1e9, description="Per million input tokens.")
    price_out: float = Field(0.0, ge=0, le=1e9, description="Per million output tokens.")
    currency: str = Field(DEFAULT_CURRENCY, description="ISO 4217 code of price_in and price_out.")
    priority: int = Field(100, ge=0, description="Lower is tried first.")
    weight: int = Field(1, ge=1, description="Share of traffic within equal priority.")
    timeout_seconds: float = Field(60.0, gt=0, le=3600)
    retries: int = Field(0, ge=0, le=3, description="Tries again on this deployment after a transient failure "
                                                  "(connection, 429, 502–504), with backoff, before failing over.")
    failures_to_open: int = Field(3, ge=1, le=100, description="Failures in a row that open its circuit.")
    cool_down_seconds: float = Field(30.0, ge=1, le=3600, description="How long an open circuit waits before "
                                                                       "one probe request may try it.")

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("backend") == "vertex":  # parsed here, kept compact; never sent in a header
            return vertex.check_key(value)
        if len(value) > MAX_API_KEY_CHARS:
            raise ValueError(f"at most {MAX_API_KEY_CHARS} characters (only a vertex service-account key may be "
                             "longer)")
        return single_line(value)

    @field_validator("hosting_jurisdiction")
    @classmethod
    def _j(cls, value: str) -> str:
        return check_country(value, "hosting_jurisdiction")

    @field_validator("currency")
    @classmethod
    def _c(cls, value: str) -> str:
        return check_currency(value)


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
    currency: str
    priority: int
    weight: int
    withdrawn: bool
    withdrawn_reason: str
    enabled: bool = True
    circuit: str = Field("closed", description="closed, open or half-open, as the server processes report it.")
    circuit_process: str | None = Field(None, description="The server process (host:pid) whose report this is.")
    circuit_at: UTCDateTime | None = Field(None, description="When that process reported it.")
    circuit_detail: str = ""
    retries: int = 0
    failures_to_open: int = 3
    cool_down_seconds: float = 30.0


class ModelEntry(ModelCreate):
    deployments: list[DeploymentEntry] = []


class DeploymentEntry(DeploymentCreate):
    model: Line = ""


class Catalogue(Strict):
    """A YAML/JSON catalogue file: `sovstack gateway apply models.yaml`."""

    models: list[ModelEntry]


class KeyPolicySet(Strict):
    """A change to a key's policy: only the fields sent are changed; ``requests_per_minute: null`` clears it."""

    default_classification: Level = Field("open", description="Kept when not sent; raised to the floor when "
                                          "the floor is raised above it.")
    floor_classification: Level = Field("open", description="Kept when not sent.")
    requests_per_minute: int | None = Field(None, ge=1, description="Kept when not sent; null removes the limit.")
    models: list[ModelName] | None = Field(None, max_length=1000, description="The only models the key may call; "
                                           "null: every model.")
    tokens_per_minute: int | None = Field(None, ge=1, le=10**12, description="Tokens (in + out) per minute, "
                                          "counted after each call.")
    max_concurrency: int | None = Field(None, ge=1, le=100_000, description="Calls in flight at once (per "
                                        "server process).")


class KeyPolicyPublic(BaseModel):
    """A key's own policy as stored; its organisation's policy may bind its calls harder."""

    key_prefix: str
    default_classification: str
    floor_classification: str
    requests_per_minute: int | None
    models: list[str] | None
    tokens_per_minute: int | None
    max_concurrency: int | None


class SpendBudgetSet(Strict):
    """A budget of a key, a person or an organisation: tokens, or money in one currency, per period."""

    scope: Literal["key", "person", "organisation"]
    subject: str = Field(min_length=1, max_length=64, description="The key's prefix, the person's email or user "
                         "id, the organisation's name or id.")
    unit: str = Field("tokens", description="tokens, or an ISO 4217 currency code: only spend priced in that "
                      "currency counts.")
    amount: float = Field(ge=0, le=1e15)
    period: Period = "month"
    alerts: list[int] = Field([50, 80, 100], max_length=10, description="Percentages of the amount at which an "
                              "alert is recorded, once per period.")

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        return "tokens" if value.strip().lower() == "tokens" else check_currency(value)

    @field_validator("alerts")
    @classmethod
    def _alerts(cls, value: list[int]) -> list[int]:
        if any(not 1 <= v <= 1000 for v in value):
            raise ValueError("alert thresholds are percentages from 1 to 1000")
        return sorted(set(value))


class SpendBudgetPublic(BaseModel):
    """A budget and what it has spent in the current period."""

    id: int
    scope: str
    subject: str
    label: str
    unit: str
    amount: float
    period: str
    alerts: list[int]
    window: str
    spent: float
    resets_in_seconds: int


class AlertPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: UTCDateTime
    budget_id: int
    scope: str
    subject: str
    unit: str
    window: str
    threshold: int
    spent: float
    amount: float


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
    cache_ttl_seconds: int | None = Field(None, description="Answers kept this long by the exact-match cache; "
                                                            "null when the cache is off.")
    responses_kept: bool = Field(False, description="Responses API answers are kept, for previous_response_id "
                                                    "and GET /v1/responses/{id}.")
    responses_retention_days: int | None = Field(None, description="How long they are kept; null when they are "
                                                                   "not.")


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
    cost: float = Field(description="The sum of costs when they share one currency (see currency); else 0.")
    currency: str = Field(description="The currency of cost; empty when no call was priced, 'mixed' when several.")
    costs: dict[str, float] = Field(description="Cost per currency.")
    errors: int
    refused: int = Field(description="Calls refused by a limit, budget, allowlist or policy (included in errors).")
    p50_latency_ms: float


class UsagePoint(BaseModel):
    day: str
    requests: int
    tokens: int
    costs: dict[str, float]


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


class OrgResponsesSet(Strict):
    """Keep an organisation's Responses API answers (for ``previous_response_id``) for ``retention_days``, or not."""

    enabled: bool
    retention_days: int = Field(30, ge=1, le=3650)


class OrgCacheSet(Strict):
    """Turn an organisation's exact-match answer cache on (answers kept ``ttl_seconds``) or off."""

    enabled: bool
    ttl_seconds: int = Field(300, ge=1, le=86_400)


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
