"""Scoring: gate and weighted score apart, gaps by mode, every number expands to its answers."""

from __future__ import annotations

import pytest

from sovstack.assess.criteria import criteria_from_text, load_criteria, profile
from sovstack.assess.explain import expand, figure_keys
from sovstack.assess.manifest import Manifest
from sovstack.assess.results import Assessment
from sovstack.assess.scoring import assess
from sovstack.assess.validate import manifest_from_data
from sovstack.core.errors import BadInput

from .conftest import small


def test_the_hyperscaler_region_is_worst_on_vendor_independence_and_data_protection(
        examples: dict[str, Manifest]) -> None:
    p = {name: assess(m).pressures for name, m in examples.items()}
    for pressure in ("vendor_independence", "data_protection"):
        values = {name: p[name][pressure].value or 0 for name in p}
        assert min(values, key=values.__getitem__) == "hyperscaler-region", (pressure, values)
    vi = {name: p[name]["vendor_independence"].value or 0 for name in p}
    assert vi["hyperscaler-region"] < vi["national-cloud"] < vi["fully-domestic"]


def test_the_fully_domestic_stack_gates_at_chips_only(examples: dict[str, Manifest]) -> None:
    a = assess(examples["fully-domestic"])
    assert a.gate.level == 0
    assert {a.results[i].layer for i in a.gate.set_by} == {"chips"}
    assert "gpu-cluster" in a.gate.summary and "SOV5-EXPORT-CONTROL" in a.gate.summary
    assert a.layers["chips"].label == "Depend"
    assert a.layers["compute"].label == "Control"
    other = assess(examples["national-cloud"])
    assert {other.results[i].layer for i in other.gate.set_by} == {"chips", "operations"}


def test_the_national_cloud_is_between_and_strong_on_local_models_and_languages(
        examples: dict[str, Manifest]) -> None:
    scores = {name: assess(m) for name, m in examples.items()}
    national, hyper, domestic = scores["national-cloud"], scores["hyperscaler-region"], scores["fully-domestic"]
    assert (hyper.score.value or 0) < (national.score.value or 0) < (domestic.score.value or 0)
    assert (national.pressures["cultural_language"].value or 0) >= 80
    assert (national.pressures["cultural_language"].value or 0) > (hyper.pressures["cultural_language"].value or 0)
    held = {r.counted for r in national.results if r.criterion == "AI-WEIGHTS-LOCAL"}
    assert held == {"local_open"}
    assert {r.counted for r in hyper.results if r.criterion == "AI-WEIGHTS-LOCAL"} == {"api_only"}


def test_gap_modes_change_the_result_as_documented() -> None:
    doc = small()
    manifest = manifest_from_data(doc)
    tolerant, conservative, strict = (assess(manifest, mode=m) for m in ("tolerant", "conservative", "strict"))

    def answer(a: Assessment, criterion: str, component: str) -> tuple[str | None, float | None, str | None]:
        r = next(r for r in a.results if r.criterion == criterion and r.component == component)
        return r.counted, r.points, r.gap

    # Declared, unevidenced: as declared / one rung down / worst rung.
    assert answer(tolerant, "SOV2-OPERATOR", "app") == ("domestic", 100.0, "no evidence")
    assert answer(conservative, "SOV2-OPERATOR", "app") == ("allied", 75.0, "no evidence")
    assert answer(strict, "SOV2-OPERATOR", "app") == ("foreign_reached", 0.0, "no evidence")
    # Evidenced: the same in every mode.
    for a in (tolerant, conservative, strict):
        assert answer(a, "SOV3-HOSTING", "app") == ("domestic", 100.0, None)
    # Not declared at all: left out / worst / worst.
    assert answer(tolerant, "AI-ACCEL-LOCKIN", "gpu") == (None, None, "unknown")
    assert answer(conservative, "AI-ACCEL-LOCKIN", "gpu") == ("single_vendor", 20.0, "unknown")
    assert (tolerant.score.value or 0) > (conservative.score.value or 0) >= (strict.score.value or 0)
    assert tolerant.gaps.count == conservative.gaps.count


def test_strict_mode_ignores_low_confidence_and_every_mode_ignores_expired_evidence() -> None:
    doc = small()
    doc["components"][2]["evidence"] = [
        {"claims": ["hosted_in"], "type": "self_declared", "source": "we say so", "date": "2026-01-01",
         "confidence": "low"},
        {"claims": ["remote_disable"], "type": "audit", "source": "old audit", "date": "2020-01-01",
         "expires": "2021-01-01"}]
    manifest = manifest_from_data(doc)
    conservative, strict = assess(manifest), assess(manifest, mode="strict")
    gap = {(r.criterion, r.component): r.gap for r in strict.results}
    assert gap[("SOV3-HOSTING", "app")] == "low-confidence evidence"
    assert gap[("SOV4-REMOTE-DISABLE", "app")] == "expired evidence"
    assert {(r.criterion, r.component): r.gap for r in conservative.results}[("SOV3-HOSTING", "app")] is None


def test_every_number_expands_into_its_answers_and_evidence(examples: dict[str, Manifest]) -> None:
    a = assess(examples["national-cloud"])
    for key in figure_keys(a):
        expanded = expand(a, key)
        assert expanded["figure"] == key
        if key not in ("gaps",) and expanded["value"] is not None:
            assert expanded["answers"], key
        for row in expanded["answers"]:
            assert {"criterion", "component", "declared", "counted", "points", "level", "gap", "evidence"} <= set(row)
    rows = expand(a, "pressures.data_protection")["answers"]
    points = [r["points"] for r in rows]
    assert round(sum(points) / len(points), 1) == a.pressures["data_protection"].value
    assert any(e["source"].startswith("CERT-In") for r in rows for e in r["evidence"])
    with pytest.raises(BadInput):
        expand(a, "pressures.happiness")


def test_weight_profiles_change_the_score_but_never_the_gate(examples: dict[str, Manifest]) -> None:
    m = examples["hyperscaler-region"]
    a, b = assess(m, weights=profile("eu-csf-document")), assess(m, weights=profile("ai-sovereignty"))
    assert a.score.value != b.score.value
    assert a.gate == b.gate
    assert "SOV-8" in a.not_assessed


def test_a_criteria_set_whose_ladder_disagrees_with_its_answer_function_is_refused() -> None:
    text = (load_criteria().model_dump_json())
    broken = text.replace('"answer":"foreign","points":10.0', '"answer":"abroad","points":10.0')
    with pytest.raises(BadInput, match="ladder"):
        criteria_from_text(broken)
