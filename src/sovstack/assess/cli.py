"""`sovstack assess …`: score a manifest, run drills, compare, import a BOM, print the schemas.

Works offline on any manifest file: no deployment folder or database is needed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
import yaml

from sovstack.assess import service
from sovstack.assess.validate import ManifestInvalid

assess_app = typer.Typer(help="The sovereignty assessor: score a stack manifest, drill disruptions, compare.",
                         no_args_is_help=True)


class Format(StrEnum):
    json = "json"
    md = "md"
    html = "html"
    cyclonedx = "cyclonedx"


class DiffFormat(StrEnum):
    json = "json"
    md = "md"


class ModeChoice(StrEnum):
    tolerant = "tolerant"
    conservative = "conservative"
    strict = "strict"


class SchemaChoice(StrEnum):
    manifest = "manifest"
    report = "report"


EXPLAIN_HELP = "Expand one figure into its answers and evidence, e.g. pressures.data_protection."
ManifestArg = typer.Argument(..., exists=True, dir_okay=False, help="Manifest file (YAML or JSON).")
OutOpt = typer.Option(None, "--out", "-o", dir_okay=False, help="Write to this file instead of standard output.")
ModeOpt = typer.Option(ModeChoice.conservative, "--mode", help="How answers without evidence count.")
ProfileOpt = typer.Option(None, "--profile", help="Weight profile: eu-csf-document (default), eu-csf-calculator, "
                                                  "ai-sovereignty.")
CriteriaOpt = typer.Option(None, "--criteria", help="Built-in criteria set name or a criteria YAML file.")
ScenarioOpt = typer.Option([], "--scenario", help="Scenario id to drill; repeat. Default: every built-in one.")


@contextmanager
def _readable_errors() -> Iterator[None]:
    """A manifest's problems, each on its own line with its path, then exit 2."""
    try:
        yield
    except ManifestInvalid as exc:
        typer.echo(f"error: {exc.message}:", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(2) from exc


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@assess_app.command("run")
def run_cmd(manifest: Path = ManifestArg, fmt: Format = typer.Option(Format.md, "--format", help="Report format."),
            out: Path | None = OutOpt, mode: ModeChoice = ModeOpt, profile: str | None = ProfileOpt,
            criteria: str | None = CriteriaOpt, scenario: list[str] = ScenarioOpt,
            drills: bool = typer.Option(True, "--drills/--no-drills", help="Run the disruption drills too."),
            rule: str | None = typer.Option(None, "--rule", help="Switching rule for exit readiness "
                                                                   "(eu-data-act, none)."),
            explain: str | None = typer.Option(None, "--explain", help=EXPLAIN_HELP)) -> None:
    """Score a manifest: gate and weighted score, pressures, layers, gaps, drills and exit readiness."""
    with _readable_errors():
        parsed = service.read_manifest(manifest)
        result = service.full_assessment(parsed, mode=mode.value, profile_name=profile, criteria_ref=criteria,
                                         scenarios=scenario if drills else None, rule=rule)
    if explain:
        _write(_json(service.explain(result.assessment, explain)), out)
        return
    _write(service.render(result, fmt.value), out)


@assess_app.command("drill")
def drill_cmd(manifest: Path = ManifestArg, scenario: list[str] = ScenarioOpt,
              scenarios_file: Path | None = typer.Option(None, "--scenarios-file", exists=True, dir_okay=False,
                                                         help="Scenarios YAML instead of the built-in ones."),
              fmt: DiffFormat = typer.Option(DiffFormat.md, "--format", help="json or md."),
              out: Path | None = OutOpt) -> None:
    """Run disruption drills: what stops, degrades or fails over, residual service, time to recover."""
    with _readable_errors():
        parsed = service.read_manifest(manifest)
        results = service.run_drills(parsed, scenario, scenarios_file)
    if fmt is DiffFormat.json:
        _write(_json(service.drills_data(results)), out)
    else:
        _write(service.drills_markdown(results), out)


@assess_app.command("diff")
def diff_cmd(before: Path = typer.Argument(..., exists=True, dir_okay=False, help="Manifest or JSON report."),
             after: Path = typer.Argument(..., exists=True, dir_okay=False, help="Manifest or JSON report."),
             fmt: DiffFormat = typer.Option(DiffFormat.md, "--format", help="json or md."), out: Path | None = OutOpt,
             mode: ModeChoice = ModeOpt, profile: str | None = ProfileOpt) -> None:
    """Compare two assessments (before/after, or option A against B): what moved, by how much, and why."""
    with _readable_errors():
        changes = service.compare(before, after, mode=mode.value, profile_name=profile)
    _write(_json(service.diff_data(changes)) if fmt is DiffFormat.json else service.diff_report(changes), out)


@assess_app.command("import")
def import_cmd(bom: Path = typer.Argument(..., exists=True, dir_okay=False, help="CycloneDX 1.6 or SPDX 3 JSON."),
               home: str = typer.Option(..., "--home-jurisdiction", help="ISO code of the home jurisdiction."),
               as_of: date | None = typer.Option(None, "--as-of", help="Assessment date (YYYY-MM-DD); default today."),
               out: Path | None = OutOpt) -> None:
    """Turn a bill of materials into a manifest, and list what the manifest still needs."""
    with _readable_errors():
        imported = service.import_file(bom, home.upper(), as_of or date.today())
    data = imported.manifest.model_dump(mode="json", exclude_defaults=True)
    _write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), out)
    typer.echo(f"imported {len(imported.manifest.components)} components from {imported.source_format}; "
               f"still missing ({len(imported.missing)}):", err=True)
    for line in imported.missing:
        typer.echo(f"  {line}", err=True)


@assess_app.command("schema")
def schema_cmd(what: SchemaChoice = typer.Option(SchemaChoice.manifest, "--what", help="manifest or report."),
               out: Path | None = OutOpt) -> None:
    """Print the JSON Schema of a manifest, or of the JSON report."""
    _write(_json(service.schema(what.value)), out)
