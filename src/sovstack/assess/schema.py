"""The published JSON Schemas: the manifest people write, and the report the assessor writes."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter

from sovstack.assess.diff import AssessmentDiff
from sovstack.assess.manifest import Manifest
from sovstack.assess.results import Assessment

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@cache
def report_adapter() -> TypeAdapter[Assessment]:
    return TypeAdapter(Assessment)


@cache
def diff_adapter() -> TypeAdapter[AssessmentDiff]:
    return TypeAdapter(AssessmentDiff)


def manifest_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a stack manifest."""
    schema = Manifest.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, "$id": "https://sovstack.invalid/schemas/assess-manifest-1.json", **schema}


def report_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of an assessment report (``--format json``)."""
    schema = report_adapter().json_schema(mode="serialization")
    return {"$schema": SCHEMA_DIALECT, "$id": "https://sovstack.invalid/schemas/assess-report-1.json", **schema}


def report_data(assessment: Assessment) -> dict[str, Any]:
    """An assessment as JSON-ready data, in the shape ``report_schema()`` describes."""
    data: dict[str, Any] = report_adapter().dump_python(assessment, mode="json")
    return data


def assessment_from_data(data: Any) -> Assessment:
    """An assessment read back from a JSON report (to diff saved results)."""
    return report_adapter().validate_python(data)
