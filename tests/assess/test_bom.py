"""Importing CycloneDX 1.6 and SPDX 3 AI/dataset packages; other versions refused clearly."""

from __future__ import annotations

import json
from datetime import date

import pytest

from sovstack.assess.bom import import_bom
from sovstack.core.errors import BadInput

from .conftest import FIXTURES


def test_cyclonedx_1_6_maps_components_services_suppliers_models_and_dependencies() -> None:
    imported = import_bom((FIXTURES / "stack.cdx.json").read_text(), "IN", date(2026, 6, 30), "stack.cdx.json")
    m = imported.manifest
    by_id = {c.id: c for c in m.components}
    parties = {p.id: p for p in m.parties}
    assert imported.source_format == "CycloneDX 1.6"
    model = by_id["indic-lm-8b"]
    assert model.layer == "models" and model.open.weights is True and model.weights_local is True
    assert model.languages == ["hi", "bn", "ta"]
    assert sorted(model.depends_on) == ["data-centre-gpu-h100", "indic-speech-corpus"]
    assert parties[model.supplier or ""].jurisdiction == "IN"  # a country name, mapped to its code
    gpu = by_id["data-centre-gpu-h100"]
    assert gpu.layer == "chips" and gpu.export_control is not None and gpu.export_control.classification == "3A090"
    assert parties["nvidia-corporation"].jurisdiction == "US"
    obs = by_id["hosted-log-analytics"]
    assert obs.layer == "operations" and obs.delivery == "service" and obs.remote_disable is True
    assert parties[obs.supplier or ""].name == "Observe Everything Inc."
    assert by_id["indic-speech-corpus"].holds_data
    assert model.evidence[0].source.startswith("CycloneDX BOM urn:uuid:")
    assert "party vllm-project: jurisdiction unknown" in imported.missing
    assert any(line.startswith("component indic-lm-8b: needs operator, hosted_in") for line in imported.missing)


@pytest.mark.parametrize("version", ["1.5", "1.4"])
def test_cyclonedx_of_another_version_is_refused(version: str) -> None:
    doc = json.loads((FIXTURES / "stack.cdx.json").read_text())
    doc["specVersion"] = version
    with pytest.raises(BadInput, match=f"CycloneDX {version} is not supported: export the BOM as CycloneDX 1.6"):
        import_bom(json.dumps(doc), "IN", date(2026, 6, 30))


def test_spdx_3_ai_and_dataset_packages_are_imported() -> None:
    imported = import_bom((FIXTURES / "stack.spdx3.json").read_text(), "IN", date(2026, 6, 30), "x.spdx3.json")
    by_id = {c.id: c for c in imported.manifest.components}
    assert imported.source_format == "SPDX 3"
    assert by_id["indic-lm-8b"].layer == "models" and by_id["indic-lm-8b"].licence == "Apache-2.0"
    assert by_id["indic-lm-8b"].depends_on == ["indic-speech-corpus"]
    assert by_id["indic-speech-corpus"].layer == "data"
    assert by_id["indic-lm-8b"].supplier == "indic-language-models-lab"


def test_spdx_2_and_unknown_documents_are_refused() -> None:
    with pytest.raises(BadInput, match="SPDX-2.3 is not supported"):
        import_bom(json.dumps({"spdxVersion": "SPDX-2.3"}), "IN", date(2026, 6, 30))
    with pytest.raises(BadInput, match="neither a CycloneDX nor an SPDX 3"):
        import_bom("{}", "IN", date(2026, 6, 30))


@pytest.mark.parametrize(("change", "problem"), [
    ({"components": 5}, "components: Input should be a valid list"),
    ({"metadata": 5}, "metadata: Input should be a valid dictionary"),
    ({"components": [{"name": 3}]}, "components[0].name: Input should be a valid string"),
    ({"components": [{"name": "x", "properties": [5]}]}, "components[0].properties[0]: Input should be an object"),
    ({"components": [{"name": "x", "components": [{"name": "y", "licenses": [{"license": "MIT"}]}]}]},
     "components[0].components[0].licenses[0].license: Input should be an object"),
    ({"dependencies": [{"ref": "gpu", "dependsOn": "model"}]},
     "dependencies[0].dependsOn: Input should be a valid list"),
])
def test_a_malformed_cyclonedx_bom_is_refused_with_the_path_of_its_problem(change: dict[str, object],
                                                                          problem: str) -> None:
    doc = {**json.loads((FIXTURES / "stack.cdx.json").read_text()), **change}
    with pytest.raises(BadInput) as caught:
        import_bom(json.dumps(doc), "IN", date(2026, 6, 30), "bom.json")
    assert caught.value.message == f"bom.json: cannot be imported as CycloneDX 1.6: {problem}"


def test_a_malformed_spdx_3_document_is_refused_with_the_path_of_its_problem() -> None:
    doc = json.loads((FIXTURES / "stack.spdx3.json").read_text())
    for graph, problem in ((5, "@graph: Input should be a valid list"), ([5], "@graph[0]: Input should be an object"),
                           ([*doc["@graph"], {"type": "Relationship", "to": "x"}],
                            f"@graph[{len(doc['@graph'])}].to: Input should be a valid list")):
        with pytest.raises(BadInput) as caught:
            import_bom(json.dumps({**doc, "@graph": graph}), "IN", date(2026, 6, 30), "x.spdx3.json")
        assert caught.value.message == f"x.spdx3.json: cannot be imported as SPDX 3: {problem}"
