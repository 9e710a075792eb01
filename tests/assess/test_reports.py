"""Reports: JSON that matches the published schema, self-contained HTML, CycloneDX attestation, diff, exit."""

from __future__ import annotations

import json
import re

from sovstack.assess.diff import diff
from sovstack.assess.manifest import Manifest
from sovstack.assess.schema import assessment_from_data, report_data, report_schema
from sovstack.assess.service import full_assessment, render


def test_the_json_report_round_trips_through_the_published_schema(examples: dict[str, Manifest]) -> None:
    run = full_assessment(examples["national-cloud"], scenarios=[])
    data = json.loads(render(run, "json"))
    assert assessment_from_data(data) == run.assessment  # validated against the model the schema is made from
    schema = report_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) <= set(data)
    assert data == report_data(run.assessment)


def test_the_html_report_is_self_contained_with_inline_charts(examples: dict[str, Manifest]) -> None:
    page = render(full_assessment(examples["hyperscaler-region"], scenarios=[]), "html")
    assert page.count("<svg") >= 2 + 5  # radar, layer bars, one timeline per drill
    assert "<script" not in page
    assert not re.search(r"<link[^>]+href=[\"']?https?:", page)
    assert not re.search(r"url\(\s*[\"']?https?:", page)
    assert not re.search(r"(src|href)=[\"']?https?:", page)
    assert "Vendor independence" in page and "Depend" in page


def test_the_cyclonedx_attestation_carries_claims_evidence_and_conformance(examples: dict[str, Manifest]) -> None:
    run = full_assessment(examples["fully-domestic"], scenarios=None)
    bom = json.loads(render(run, "cyclonedx"))
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    standard = bom["definitions"]["standards"][0]
    assert {r["identifier"] for r in standard["requirements"]} >= {"SOV5-EXPORT-CONTROL", "AI-WEIGHTS-LOCAL"}
    attestation = bom["declarations"]["attestations"][0]
    claims = {c["bom-ref"] for c in bom["declarations"]["claims"]}
    assert all(set(m["claims"]) <= claims for m in attestation["map"])
    assert all(0 <= m["conformance"]["score"] <= 1 for m in attestation["map"])
    assert {p["name"] for p in bom["metadata"]["properties"]} >= {"sovstack:assess:gate", "sovstack:assess:score"}


def test_markdown_shows_gate_and_score_side_by_side(examples: dict[str, Manifest]) -> None:
    text = render(full_assessment(examples["fully-domestic"], scenarios=["vendor-sanctions"]), "md")
    assert "| Gate (lowest level) | Weighted score |" in text
    assert "## Disruption drills" in text and "## Exit readiness (against eu-data-act)" in text


def test_exit_readiness_against_the_eu_data_act(examples: dict[str, Manifest]) -> None:
    national = {e.component: e for e in full_assessment(examples["national-cloud"]).assessment.exit}
    assert national["iaas"].verdict == "ready" and national["iaas"].allowed_days == 90
    assert national["observability"].verdict == "partial"
    assert "never tested" in "; ".join(national["observability"].reasons)
    assert national["gpu-cluster"].verdict == "not_ready"


def test_diff_says_what_moved_by_how_much_and_why(examples: dict[str, Manifest]) -> None:
    before = full_assessment(examples["hyperscaler-region"], scenarios=[]).assessment
    after = full_assessment(examples["national-cloud"], scenarios=[]).assessment
    changes = diff(before, after)
    moved = {m.figure: m for m in changes.moves}
    score = moved["score"]
    assert score.delta == round((after.score.value or 0) - (before.score.value or 0), 1) and score.delta > 0
    assert any("AI-WEIGHTS-LOCAL" in w for w in moved["pressures.vendor_independence"].why)
    vendor = {m.figure: m for m in changes.drills}["drills.vendor-sanctions.residual_final"]
    assert vendor.before == 0.0 and vendor.after == 1.0 and any("no longer down" in w for w in vendor.why)
    assert diff(before, before).moves == ()
