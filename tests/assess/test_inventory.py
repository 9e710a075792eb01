"""The live deployment's inventory becomes a manifest; what it does not say becomes gaps."""

from __future__ import annotations

from dataclasses import dataclass, field

from sovstack.assess.inventory import manifest_from_inventory
from sovstack.assess.scoring import assess
from sovstack.core.plugins import InventoryItem


@dataclass
class Party:
    name: str
    jurisdiction: str
    ultimate_parent: str = ""
    parent_jurisdiction: str = ""
    kinds: list[str] = field(default_factory=list)


def test_inventory_items_become_components_in_layers_and_unknowns_become_gaps() -> None:
    items = [
        InventoryItem("data", "dataset", "census", "data", ("Stats Office",), "IN",
                      {"licence": "CC-BY-4.0", "languages": ["hi", "ta"]}),
        InventoryItem("gateway", "model_deployment", "frontier", "models", ("Hyper India", "Frontier Labs"), "IN",
                      {"open_weights": False}),
        InventoryItem("compute", "provider", "gpu-pool", "compute", ("Hyper India",), "IN"),
        InventoryItem("platform", "service", "console", "platform", ("Unregistered Co",), ""),
    ]
    parties = [Party("Stats Office", "IN"), Party("Hyper India", "IN", "Hyper Inc", "US"),
               Party("Frontier Labs", "US")]
    m = manifest_from_inventory(items, parties, "IN")
    layers = {c.id: c.layer for c in m.components}
    assert sorted(layers.values()) == ["compute", "data", "models", "software"]
    model = next(c for c in m.components if c.layer == "models")
    assert model.operator == "hyper-india" and model.supplier == "frontier-labs" and model.open.weights is False
    unknown = next(p for p in m.parties if p.name == "Unregistered Co")
    assert unknown.jurisdiction is None
    a = assess(m)
    assert a.gaps.count > 0 and a.gaps.by_reason.get("unknown", 0) > 0
    assert a.gate.level == 0
