"""The parts of CycloneDX 1.6 and SPDX 3 documents the BOM importer reads, with the types it relies on.

The importer maps plain dictionaries; checking their shape first means a malformed BOM (``"components": 5``,
a name that is a number) is refused with the path of its first problem instead of failing inside the mapping.
Everything else in a document is let through untouched.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovstack.core.errors import BadInput


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _Property(_Open):
    name: Any = ""
    value: Any = ""


class _Address(_Open):
    country: Any = None


class _Entity(_Open):
    name: str | None = None
    address: _Address | None = None


class _LicenseRef(_Open):
    id: str | None = None
    name: str | None = None


class _LicenseChoice(_Open):
    license: _LicenseRef | None = None
    expression: str | None = None


class _CdxComponent(_Open):
    type: str = ""
    bom_ref: str | None = Field(None, alias="bom-ref")
    name: str | None = None
    supplier: _Entity | None = None
    manufacturer: _Entity | None = None
    provider: _Entity | None = None
    licenses: list[_LicenseChoice] = []
    properties: list[_Property] = []
    components: list[_CdxComponent] = []
    services: list[_CdxComponent] = []


class _CdxDependency(_Open):
    ref: str | None = None
    depends_on: list[str] = Field([], alias="dependsOn")


class CycloneDx(_Open):
    metadata: dict[str, Any] | None = None
    components: list[_CdxComponent] = []
    services: list[_CdxComponent] = []
    dependencies: list[_CdxDependency] = []


class _SpdxElement(_Open):
    type: str | None = None
    spdx_id: str | None = Field(None, alias="spdxId")
    name: str | None = None
    originated_by: list[Any] = Field([], alias="originatedBy")
    to: list[str] = []


class Spdx3(_Open):
    graph: list[_SpdxElement] = Field([], alias="@graph")


def check(shape: type[BaseModel], what: str, data: dict[str, Any], name: str) -> None:
    """Refuse ``data`` unless it has ``shape`` where the importer reads it, naming the first problem's path."""
    try:
        shape.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.get("loc", ())).lstrip(".")
        msg = "Input should be an object" if first["type"] == "model_type" else first["msg"]  # not our class name
        raise BadInput(f"{name}: cannot be imported as {what}: {where or 'document'}: {msg}") from exc
