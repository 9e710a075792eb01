"""Bad manifests are refused with every problem at once, each with its path."""

from __future__ import annotations

import json

import pytest

from sovstack.assess.graph import find_cycles
from sovstack.assess.validate import ManifestInvalid, load_manifest, manifest_from_data

from .conftest import small


def problems(doc: object) -> list[str]:
    with pytest.raises(ManifestInvalid) as caught:
        manifest_from_data(doc)
    return [str(p) for p in caught.value.problems]


def test_every_schema_error_is_reported_at_once_with_its_path() -> None:
    doc = small()
    doc["components"][0]["layer"] = "quantum"
    doc["components"][1]["substitutes"][0]["switch_days"] = -1
    doc["components"][2]["evidence"][0]["confidence"] = "certain"
    doc["components"][2]["colour"] = "blue"
    del doc["home"]
    found = problems(doc)
    assert len(found) == 5
    assert any(p.startswith("components[0].layer:") for p in found)
    assert any(p.startswith("components[1].substitutes[0].switch_days:") for p in found)
    assert any(p.startswith("components[2].evidence[0].confidence:") for p in found)
    assert any(p.startswith("components[2].colour:") for p in found)
    assert any(p.startswith("home:") for p in found)


def test_cross_reference_problems_are_all_reported() -> None:
    doc = small(home="QQ")
    doc["parties"][1]["parent_jurisdiction"] = "XX"
    doc["components"][0]["supplier"] = "nobody"
    doc["components"][2]["depends_on"] = ["gpu", "ghost"]
    doc["components"][1]["export_control"] = {"controlled": True, "regime": "made-up"}
    doc["components"].append(dict(doc["components"][0]))
    found = problems(doc)
    assert "home: unknown jurisdiction code 'QQ': expected an ISO 3166-1 alpha-2 code" in found
    assert any(p.startswith("parties[1].parent_jurisdiction: unknown jurisdiction code 'XX'") for p in found)
    assert any(p.startswith("components[0].supplier: unknown party 'nobody'") for p in found)
    assert any(p.startswith("components[2].depends_on[1]: unknown component 'ghost'") for p in found)
    assert any(p.startswith("components[1].export_control.regime: unknown export regime") for p in found)
    assert any(p.startswith("components[3].id: duplicate component id 'gpu'") for p in found)


def test_a_dependency_cycle_is_reported_with_its_components() -> None:
    doc = small()
    doc["components"][0]["depends_on"] = ["app"]
    found = problems(doc)
    assert found == ["components: dependency cycle: gpu → app → gpu"]


def test_cycles_are_found_without_looping_on_a_large_ring() -> None:
    ring = {f"c{i}": [f"c{(i + 1) % 20000}"] for i in range(20000)}
    (cycle,) = find_cycles(ring)
    assert len(cycle) == 20000


def test_contradictory_evidence_is_refused() -> None:
    doc = small()
    app = doc["components"][2]
    app["evidence"].append({"claims": ["remote_disable"], "type": "contract", "source": "contract 2",
                            "date": "2026-02-01", "says": {"remote_disable": True}})
    app["evidence"].append({"claims": ["hosted_in"], "type": "document", "source": "doc",
                            "date": "2026-02-01", "says": {"hosted_in": ["IN"]}})
    app["evidence"].append({"claims": ["hosted_in"], "type": "document", "source": "doc 2",
                            "date": "2026-02-01", "says": {"hosted_in": ["IN", "US"]}})
    found = problems(doc)
    assert any("evidence[1]: contradictory evidence: says remote_disable = True but the component declares False"
               in p for p in found)
    assert any("evidence[3]: contradictory evidence" in p for p in found)


def test_unknown_claim_names_and_expiry_before_date_are_refused() -> None:
    doc = small()
    doc["components"][2]["evidence"][0]["claims"] = ["vibes"]
    doc["components"][2]["evidence"][0]["expires"] = "2025-01-01"
    found = problems(doc)
    assert any("unknown claim 'vibes'" in p for p in found)
    assert any(p.startswith("components[2].evidence[0].expires: expires before its date") for p in found)


def test_json_and_yaml_load_the_same_manifest_and_syntax_errors_are_clear() -> None:
    doc = small()
    assert load_manifest(json.dumps(doc)) == manifest_from_data(doc)
    with pytest.raises(ManifestInvalid) as caught:
        load_manifest("name: [unclosed", "bad.yaml")
    assert str(caught.value.problems[0]) == ("bad.yaml: not valid YAML: did not find expected ',' or ']' "
                                             "(line 2, column 1), while parsing a flow sequence (line 1, column 7)")
