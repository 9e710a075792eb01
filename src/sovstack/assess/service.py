"""The assessor's one service layer: what the CLI, the API and the console call, with no I/O policy.

Everything here takes parsed manifests or file paths and returns engine results; formatting for a
terminal, an HTTP response or a page is the caller's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sovstack.assess import reports
from sovstack.assess.attest import attestation
from sovstack.assess.bom import BomImport, import_bom
from sovstack.assess.criteria import CriteriaSet, load_criteria, profile, profiles
from sovstack.assess.diff import AssessmentDiff, diff
from sovstack.assess.drills import drill
from sovstack.assess.exit import exit_readiness, switching_rule
from sovstack.assess.explain import expand
from sovstack.assess.manifest import Manifest
from sovstack.assess.results import Assessment, DrillResult, Mode
from sovstack.assess.scenarios import builtin_scenarios, select_scenarios
from sovstack.assess.schema import assessment_from_data, diff_adapter, manifest_schema, report_data, report_schema
from sovstack.assess.scoring import assess
from sovstack.assess.stack import Stack
from sovstack.assess.validate import ManifestInvalid, load_manifest, manifest_from_data, parse_document, schema_problems
from sovstack.core import documents
from sovstack.core.errors import BadInput


@dataclass(frozen=True)
class AssessmentRun:
    """An assessment with the manifest and criteria it came from (reports and attestations need all three)."""

    manifest: Manifest
    criteria: CriteriaSet
    assessment: Assessment


def read_manifest(path: Path) -> Manifest:
    return load_manifest(documents.read_text(path), path.name)


def full_assessment(manifest: Manifest, *, mode: str = "conservative", profile_name: str | None = None,
                    criteria_ref: str | Path | None = None, scenarios: list[str] | None = None,
                    rule: str | None = None) -> AssessmentRun:
    """Score, then drill (every built-in scenario when ``scenarios`` is empty; none when None), then exit."""
    criteria = load_criteria(criteria_ref)
    result = assess(manifest, criteria, profile(profile_name), _mode(mode))
    if scenarios is not None:
        result.drills = run_drills(manifest, scenarios)
    switching = switching_rule(rule)
    result.exit, result.exit_rule = exit_readiness(manifest, switching), switching.id
    return AssessmentRun(manifest, criteria, result)


def _mode(value: str) -> Mode:
    if value not in ("tolerant", "conservative", "strict"):
        raise BadInput(f"unknown mode {value!r}: tolerant, conservative or strict", field="mode")
    return value  # type: ignore[return-value]


def run_drills(manifest: Manifest, names: list[str], file: Path | None = None) -> list[DrillResult]:
    """The named scenarios (all when none are named) run on one indexed copy of the stack."""
    stack = Stack(manifest)
    return [drill(stack, scenario) for scenario in select_scenarios(names, file)]


def render(run: AssessmentRun, fmt: str) -> str:
    """The report in one of json, md, html, cyclonedx."""
    if fmt == "json":
        return json.dumps(report_data(run.assessment), indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return reports.markdown(run.assessment, run.criteria)
    if fmt == "html":
        return reports.html(run.assessment, run.criteria)
    if fmt == "cyclonedx":
        return json.dumps(attestation(run.manifest, run.assessment, run.criteria), indent=2, ensure_ascii=False) + "\n"
    raise BadInput(f"unknown report format {fmt!r}: json, md, html or cyclonedx", field="format")


def explain(assessment: Assessment, key: str) -> dict[str, Any]:
    return expand(assessment, key)


_DRILLS = TypeAdapter(list[DrillResult])


def drills_data(results: list[DrillResult]) -> list[Any]:
    data: list[Any] = _DRILLS.dump_python(results, mode="json")
    return data


def drills_markdown(results: list[DrillResult]) -> str:
    return "\n".join(reports._markdown_drills(results)).strip() + "\n"


def load_assessment(path: Path, *, mode: str = "conservative", profile_name: str | None = None) -> Assessment:
    """An assessment from a JSON report, or computed (with every built-in drill) from a manifest."""
    text = documents.read_text(path)
    data = parse_document(text, path.name)
    if isinstance(data, dict) and "report_version" in data:
        return assessment_from_data(data)
    return full_assessment(load_manifest(text, path.name), mode=mode, profile_name=profile_name,
                           scenarios=[]).assessment


def compare(before: Path, after: Path, *, mode: str = "conservative",
            profile_name: str | None = None) -> AssessmentDiff:
    return diff(load_assessment(before, mode=mode, profile_name=profile_name),
                load_assessment(after, mode=mode, profile_name=profile_name))


def diff_data(changes: AssessmentDiff) -> dict[str, Any]:
    data: dict[str, Any] = diff_adapter().dump_python(changes, mode="json")
    return data


def diff_report(changes: AssessmentDiff) -> str:
    return reports.diff_markdown(changes)


def import_file(path: Path, home: str, as_of: date) -> BomImport:
    return import_bom(documents.read_text(path), home, as_of, path.name)


def import_text(text: str, home: str, as_of: date, name: str = "bom") -> BomImport:
    return import_bom(text, home, as_of, name)


def schema(what: str) -> dict[str, Any]:
    if what == "report":
        return report_schema()
    return manifest_schema()


# Documents as they arrive over HTTP ---------------------------------------------------------------

@dataclass(frozen=True)
class Analysed:
    """A manifest read from a document: a manifest itself, or one imported from a bill of materials."""

    manifest: Manifest
    source_format: str
    missing: tuple[str, ...] = ()


def is_bom(data: Any) -> bool:
    """Whether parsed data looks like a CycloneDX or SPDX document rather than a manifest."""
    return isinstance(data, dict) and ("bomFormat" in data or "spdxVersion" in data or "@graph" in data
                                       or "spdx.org" in str(data.get("@context", "")))


def read_document(text: str, name: str, home: str, as_of: date) -> Analysed:
    """A checked manifest from YAML/JSON manifest text, or from CycloneDX 1.6 / SPDX 3 JSON (imported)."""
    if is_bom(parse_document(text, name)):
        imported = import_bom(text, home, as_of, name)
        return Analysed(imported.manifest, imported.source_format, imported.missing)
    return Analysed(load_manifest(text, name), "manifest")


def assessment_of(data: Any, where: str, *, mode: str = "conservative",
                  profile_name: str | None = None) -> Assessment:
    """An assessment from a JSON report, or computed (with every built-in drill) from manifest data;
    ``ManifestInvalid`` with every problem's path under ``where`` otherwise."""
    try:
        if isinstance(data, dict) and "report_version" in data:
            return assessment_from_data(data)
        return full_assessment(manifest_from_data(data), mode=mode, profile_name=profile_name,
                               scenarios=[]).assessment
    except ManifestInvalid as exc:
        raise exc.within(where) from exc
    except ValidationError as exc:  # a report that does not match the report schema
        raise ManifestInvalid(schema_problems(exc)).within(where) from exc


def compare_data(before: Any, after: Any, *, mode: str = "conservative",
                 profile_name: str | None = None) -> AssessmentDiff:
    """What moved between two manifests or reports given as parsed data."""
    return diff(assessment_of(before, "before", mode=mode, profile_name=profile_name),
                assessment_of(after, "after", mode=mode, profile_name=profile_name))


def scenarios_data() -> list[dict[str, Any]]:
    """The built-in disruption scenarios, with their shocks and sources."""
    return [s.model_dump(mode="json") for s in builtin_scenarios().scenarios]


def criteria_data(ref: str | None = None) -> dict[str, Any]:
    """A criteria set (the default one unless named) and the shipped weight profiles."""
    criteria = load_criteria(ref) if ref is None else load_criteria(_builtin_name(ref))
    return {"ref": criteria.ref, **criteria.model_dump(mode="json"),
            "profiles": [p.model_dump(mode="json") for p in profiles().values()]}


def _builtin_name(ref: str) -> str:
    """Only built-in criteria sets by name over the network: never a path on the server."""
    if "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml")):
        raise BadInput("name a built-in criteria set, not a file", field="criteria")
    return ref
