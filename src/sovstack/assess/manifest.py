"""The stack manifest: components in layers, the parties behind them, and the evidence for each claim.

These models only say what a well-formed manifest looks like. Loading, cross-reference checks and
the dependency graph live in ``validate.py``; the published JSON Schema is made from these models.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_VERSION = "1"

Layer = Literal["chips", "compute", "network", "data", "models", "software", "operations"]
LAYERS: tuple[str, ...] = ("chips", "compute", "network", "data", "models", "software", "operations")

EvidenceType = Literal["contract", "certification", "audit", "test", "public_record", "document", "self_declared"]
Confidence = Literal["high", "medium", "low"]
KeyHolder = Literal["customer", "operator", "supplier", "none"]
ExportFormat = Literal["open", "proprietary", "none"]

# The claims a component makes that evidence can back; each is a field of ``Component``.
CLAIMS: tuple[str, ...] = (
    "supplier", "operator", "hosted_in", "licence", "open", "export_control", "remote_disable", "keys_held_by",
    "languages", "lock_in", "weights_local", "fine_tunable", "substitutes", "exit",
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Party(Strict):
    """An organisation that supplies or operates a component, with its own and its ultimate parent's jurisdiction."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    jurisdiction: str | None = Field(None, description="ISO 3166-1 alpha-2 code; null when not known (a gap).")
    ultimate_parent: str | None = None
    parent_jurisdiction: str | None = Field(None, description="Null means the party is its own ultimate parent.")
    kinds: list[str] = Field(default_factory=list, description="chip_vendor, cloud_provider, model_developer…")


class Evidence(Strict):
    """What backs one or more claims of a component: a document, a contract, a test…"""

    claims: list[str] = Field(min_length=1, description="Names of the component's claims this evidence backs.")
    type: EvidenceType
    source: str = Field(min_length=1, description="Where to find it: a URL, a document reference, a contract clause.")
    date: dt.date
    expires: dt.date | None = None
    confidence: Confidence = "medium"
    says: dict[str, Any] = Field(default_factory=dict,
                                 description="Values the evidence states for some claims (checked for contradictions).")


class Openness(Strict):
    source: bool | None = Field(None, description="Source code available under an open licence.")
    weights: bool | None = Field(None, description="Model weights downloadable under an open licence.")


class ExportControl(Strict):
    """Export-control classification; ``controlled: false`` means known to be uncontrolled (e.g. EAR99)."""

    controlled: bool
    regime: str | None = Field(None, description="Id of an export regime in the jurisdiction catalogue (us-ear…).")
    classification: str | None = Field(None, description="ECCN or equivalent, e.g. 3A090.")


class Substitute(Strict):
    """A declared replacement: another component of the manifest or an outside offer from a party."""

    name: str = Field(min_length=1)
    component: str | None = Field(None, description="Id of a component in this manifest that can take over.")
    supplier: str | None = Field(None, description="Party id of who supplies the substitute, when outside.")
    hosted_in: list[str] = Field(default_factory=list)
    switch_days: float = Field(ge=0, description="Days to switch over once decided.")
    tested: dt.date | None = Field(None, description="When a switch was last rehearsed; null when never.")


class Exit(Strict):
    data_export: ExportFormat | None = None
    config_export: ExportFormat | None = None
    formats: list[str] = Field(default_factory=list, description="E.g. Parquet, OCI image, safetensors.")


class Component(Strict):
    """One part of the stack, in one layer, with who supplies and operates it and what it depends on."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    layer: Layer
    delivery: Literal["installed", "service"] = Field(
        "service", description="installed: runs on equipment you hold and keeps running when cut off.")
    supplier: str | None = Field(None, description="Party id.")
    operator: str | None = Field(None, description="Party id.")
    hosted_in: list[str] = Field(default_factory=list, description="ISO codes of where it runs or stores data.")
    licence: str | None = None
    open: Openness = Field(default_factory=Openness)
    export_control: ExportControl | None = None
    remote_disable: bool | None = Field(None, description="Can the supplier switch it off from afar?")
    keys_held_by: KeyHolder | None = None
    holds_data: bool = False
    languages: list[str] = Field(default_factory=list, description="BCP-47 tags the model or data covers.")
    lock_in: Literal["none", "portable", "single_vendor"] | None = Field(
        None, description="Accelerator/driver lock-in: does the software run on other vendors' hardware?")
    weights_local: bool | None = Field(None, description="Model weights held on equipment you control.")
    fine_tunable: bool | None = None
    depends_on: list[str] = Field(default_factory=list)
    substitutes: list[Substitute] = Field(default_factory=list)
    exit: Exit = Field(default_factory=Exit)
    serves: float = Field(0, ge=0, description="Share of the service this component delivers to users.")
    tags: list[str] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)


class Manifest(Strict):
    """A whole stack as one document."""

    manifest_version: Literal["1"] = "1"
    name: str = Field(min_length=1)
    description: str = ""
    home: str = Field(description="ISO 3166-1 alpha-2 code of the jurisdiction whose sovereignty is assessed.")
    as_of: dt.date = Field(description="Date the assessment speaks for: evidence is judged valid or expired on it.")
    languages: list[str] = Field(default_factory=list, description="Languages the stack must serve (BCP-47).")
    parties: list[Party] = Field(default_factory=list)
    components: list[Component] = Field(default_factory=list)
