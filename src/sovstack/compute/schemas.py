"""Request and response models of the compute exchange."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from sovstack.core.base import UTCDateTime
from sovstack.core.jurisdictions import check_country, check_place
from sovstack.core.schemas import OrgKind, Strict

Level = Literal["open", "restricted", "sensitive"]
NAME = r"^[a-z][a-z0-9-]{1,62}$"
CATEGORIES = ("government", "academic", "startup", "enterprise", "provider", "civil_society")
# Which company designs each accelerator, so offers need not say it (they may).
CHIP_VENDORS = {"H100": "NVIDIA", "H200": "NVIDIA", "B200": "NVIDIA", "A100": "NVIDIA", "L40S": "NVIDIA",
                "MI300X": "AMD", "MI325X": "AMD", "Gaudi2": "Intel", "Gaudi3": "Intel", "Trainium1": "AWS",
                "Inferentia2": "AWS", "TPU-v6e": "Google"}


class ProviderCreate(Strict):
    name: str = Field(min_length=2, max_length=200)
    party: str = Field(description="The party (registered organisation of the stack) that runs this provider.")
    organisation: str | None = Field(None, description="The member organisation whose staff accept allocations "
                                                       "and report usage.")
    corporate_group: str = Field("", max_length=200, description="Defaults to the party's ultimate parent.")
    datacentre_jurisdiction: str
    control_plane_jurisdiction: str

    @field_validator("datacentre_jurisdiction", "control_plane_jurisdiction")
    @classmethod
    def _country(cls, value: str, info: Any) -> str:
        return check_country(value, info.field_name)


class ProviderPublic(BaseModel):
    id: int
    name: str
    party: str
    organisation: str | None
    corporate_group: str
    jurisdiction: str
    parent_jurisdiction: str
    datacentre_jurisdiction: str
    control_plane_jurisdiction: str
    foreign_controlled: bool
    extraterritorial_laws: list[str]
    offers: int
    created_at: UTCDateTime


class OfferCreate(Strict):
    provider: str
    gpu_type: str = Field(min_length=2, max_length=32, description="e.g. H100, H200, MI300X, L40S, Gaudi2.")
    chip_vendor: str = Field("", max_length=64, description="Defaults from the GPU type (NVIDIA for H100…).")
    gpu_count: int = Field(gt=0, le=1_000_000, description="GPUs available in every week of the window.")
    price: float = Field(gt=0, le=100_000, description="Price per GPU-hour in the programme currency.")
    available_from: date
    available_until: date
    delivery: Literal["committed", "delivered"] = Field(
        description="delivered: installed and benchmarked, so it can be allocated; committed: promised only.")
    benchmark: str = Field("", max_length=2000, description="Evidence of delivered capacity (required if delivered).")

    @model_validator(mode="after")
    def _consistent(self) -> OfferCreate:
        if self.available_until < self.available_from:
            raise ValueError("available_until: must not be before available_from")
        if self.delivery == "delivered" and not self.benchmark:
            raise ValueError("benchmark: delivered capacity needs its benchmark evidence")
        if not self.chip_vendor:
            self.chip_vendor = CHIP_VENDORS.get(self.gpu_type, "")
            if not self.chip_vendor:
                raise ValueError(f"chip_vendor: unknown for GPU type {self.gpu_type!r}; say which company makes it")
        return self


class OfferUpdate(Strict):
    gpu_count: int | None = Field(None, gt=0, le=1_000_000)
    price: float | None = Field(None, gt=0, le=100_000)
    delivery: Literal["committed", "delivered"] | None = None
    benchmark: str | None = Field(None, max_length=2000)
    available_until: date | None = None


class OfferPublic(BaseModel):
    id: int
    provider: str
    gpu_type: str
    chip_vendor: str
    gpu_count: int
    price: float
    available_from: date
    available_until: date
    delivery: str
    benchmark: str
    withdrawn: bool
    foreign_controlled: bool
    jurisdiction: str
    datacentre_jurisdiction: str


class Caps(Strict):
    """Maximum shares of allocated GPU-hours; null means no cap."""

    provider: float | None = Field(None, gt=0, le=1)
    group: float | None = Field(None, gt=0, le=1, description="Per corporate group (ultimate parent).")
    foreign: float | None = Field(None, ge=0, le=1, description="All foreign-controlled providers together.")
    chip_vendor: float | None = Field(None, gt=0, le=1)


class ProgrammeCreate(Strict):
    name: str = Field(pattern=NAME)
    title: str = Field(min_length=1, max_length=300)
    currency: str = Field("INR", pattern=r"^[A-Z]{3}$")
    budget: float = Field(gt=0, le=1e15, description="Subsidy money the programme may pay out.")
    subsidy_rate: float = Field(ge=0, le=1, description="Share of cost the programme pays, e.g. 0.4.")
    category_rates: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="Rate per applicant category.")
    eligible_kinds: list[OrgKind] = Field(default_factory=lambda: ["government", "academic", "startup"])  # type: ignore[arg-type]
    eligible_jurisdictions: list[str] = Field(default_factory=list, description="Empty: the home jurisdiction.")
    category_floor: dict[str, Annotated[float, Field(ge=0, le=1e15)]] = Field(
        default_factory=dict, description="Minimum subsidy per category.")
    category_ceiling: dict[str, Annotated[float, Field(ge=0, le=1e15)]] = Field(
        default_factory=dict, description="Maximum subsidy per category.")
    fast_track_gpu_hours: float = Field(0, ge=0, le=1e9, description="Requests up to this size are approved by rule.")
    caps: Caps = Field(default_factory=lambda: Caps(provider=0.4, group=0.5, foreign=0.5, chip_vendor=0.8))
    start: date
    periods: int = Field(gt=0, le=520, description="How many periods (weeks by default) the programme runs.")
    period_days: int = Field(7, gt=0, le=366)
    idle_days: int = Field(14, gt=0, le=366, description="Accepted allocations unused this long are reclaimable.")
    gap_limit: float = Field(0.01, gt=0, lt=1)
    time_limit: float = Field(10.0, gt=0, le=3600)

    @field_validator("category_rates")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for key, rate in value.items():
            _category(key, "category_rates")
            if not 0 <= rate <= 1:
                raise ValueError(f"category_rates: {key} must be between 0 and 1")
        return value

    @field_validator("category_floor", "category_ceiling")
    @classmethod
    def _bounds(cls, value: dict[str, float], info: Any) -> dict[str, float]:
        for key, amount in value.items():
            _category(key, info.field_name)
            if amount < 0:
                raise ValueError(f"{info.field_name}: {key} must not be negative")
        return value

    @field_validator("eligible_jurisdictions")
    @classmethod
    def _places(cls, value: list[str]) -> list[str]:
        return [check_place(v, "eligible_jurisdictions") for v in value]


def _category(key: str, field: str) -> None:
    if key not in CATEGORIES:
        raise ValueError(f"{field}: {key!r} is not a category ({', '.join(CATEGORIES)})")


class ProgrammePublic(BaseModel):
    id: int
    name: str
    title: str
    currency: str
    budget: float
    subsidy_rate: float
    category_rates: dict[str, float]
    eligible_kinds: list[str]
    eligible_jurisdictions: list[str]
    category_floor: dict[str, float]
    category_ceiling: dict[str, float]
    fast_track_gpu_hours: float
    caps: dict[str, float | None]
    start: date
    periods: int
    period_days: int
    idle_days: int
    gap_limit: float
    time_limit: float


class RoundCreate(Strict):
    review_deadline: date


class RoundPublic(BaseModel):
    id: int
    programme: str
    number: int
    review_deadline: date
    status: str
    requests: int
    reviewed: int
    result: dict[str, Any]
    solved_at: UTCDateTime | None


class RequestCreate(Strict):
    programme: str
    organisation: str = Field(description="The applicant organisation (you must be a member).")
    title: str = Field(min_length=3, max_length=300)
    proposal: str = Field("", max_length=20_000)
    gpu_types: list[str] = Field(min_length=1, max_length=20, description="Acceptable GPU types.")
    gpus_per_job: int = Field(gt=0, le=100_000, description="GPUs the job needs at once, on one offer.")
    gpu_hours: float = Field(gt=0, le=1e9)
    earliest_period: int = Field(0, ge=0)
    latest_period: int = Field(ge=0)
    data_classification: Level = Field(description="The data the work uses; policy decides which providers may run it.")

    @model_validator(mode="after")
    def _window(self) -> RequestCreate:
        if self.latest_period < self.earliest_period:
            raise ValueError("latest_period: must not be before earliest_period")
        return self


class ReviewCreate(Strict):
    score: float = Field(ge=1, le=10, description="Merit, 1 (weak) to 10 (outstanding).")
    comment: str = Field("", max_length=5000)


class ReviewPublic(BaseModel):
    id: int
    request_id: int
    reviewer: str
    score: float
    comment: str
    created_at: UTCDateTime


class RequestPublic(BaseModel):
    id: int
    programme: str
    round: int | None
    organisation: str
    category: str
    title: str
    proposal: str
    gpu_types: list[str]
    gpus_per_job: int
    gpu_hours: float
    earliest_period: int
    latest_period: int
    data_classification: str
    fast_track: bool
    status: str
    reviews: int
    merit: float | None
    explanation: dict[str, Any]
    created_at: UTCDateTime


class AllocationPublic(BaseModel):
    id: int
    request_id: int
    request: str
    organisation: str
    offer_id: int
    provider: str
    gpu_type: str
    start_period: int
    periods: list[int]
    gpus: int
    gpu_hours: float
    used_gpu_hours: float
    price: float
    cost: float
    subsidy: float
    applicant_share: float
    status: str
    reason: str
    idle: bool
    created_at: UTCDateTime


class AllocationDecision(Strict):
    decision: Literal["accept", "decline"]
    reason: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _reason(self) -> AllocationDecision:
        if self.decision == "decline" and not self.reason:
            raise ValueError("reason: a decline needs a reason")
        return self


class UsageCreate(Strict):
    allocation_id: int
    gpu_hours: float = Field(gt=0, le=1e9)
    day: date
    reference: str = Field(min_length=1, max_length=100, description="The provider's id of this report; "
                                                                   "sending the same one twice counts once.")


class UsagePublic(BaseModel):
    id: int
    allocation_id: int
    gpu_hours: float
    day: date
    reference: str
    reported_by: str
    allocation_used: float
    allocation_gpu_hours: float


class CutoffCreate(Strict):
    provider: str | None = None
    jurisdiction: str | None = None
    chip_vendor: str | None = None
    dry_run: bool = Field(False, description="Report what would happen, change nothing.")

    @model_validator(mode="after")
    def _one(self) -> CutoffCreate:
        given = [k for k in ("provider", "jurisdiction", "chip_vendor") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("provider: name exactly one of provider, jurisdiction or chip_vendor")
        if self.jurisdiction:
            self.jurisdiction = check_country(self.jurisdiction, "jurisdiction")
        return self


class CutoffPublic(BaseModel):
    id: int | None
    selector: str
    value: str
    offers: list[int]
    report: dict[str, Any]
    created_by: str
    created_at: UTCDateTime | None
    restored_at: UTCDateTime | None
