"""A manifest of the live deployment, from what the modules publish through ``sovstack_inventory``.

Whatever the inventory does not say (who can switch a component off, who holds its keys, substitutes)
stays unknown, and so becomes a gap in the assessment rather than a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol

from sovstack.assess.manifest import LAYERS, Manifest
from sovstack.assess.validate import manifest_from_data
from sovstack.core.jurisdictions import catalogue
from sovstack.core.plugins import InventoryItem

# Inventory layer names onto manifest layers.
LAYER_OF = {"data": "data", "datasets": "data", "models": "models", "model": "models", "compute": "compute",
            "platform": "software", "software": "software", "network": "network", "chips": "chips",
            "operations": "operations"}


class PartyLike(Protocol):
    """What the assessor reads of a party (the core party table rows fit)."""

    name: str
    jurisdiction: str
    ultimate_parent: str
    parent_jurisdiction: str
    kinds: list[str]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unnamed"


def _code(value: str | None) -> str | None:
    code = (value or "").strip().upper()
    return code if code in catalogue().countries else None


def manifest_from_inventory(items: Sequence[InventoryItem], parties: Sequence[PartyLike], home: str,
                            as_of: date | None = None, name: str = "This deployment") -> Manifest:
    """The live deployment as a checked manifest: one component per item, parties from the registry."""
    known = {p.name: p for p in parties}
    party_docs: dict[str, dict[str, Any]] = {}
    for p in parties:
        party_docs[_slug(p.name)] = {"id": _slug(p.name), "name": p.name, "jurisdiction": _code(p.jurisdiction),
                                     "ultimate_parent": p.ultimate_parent or None,
                                     "parent_jurisdiction": _code(p.parent_jurisdiction), "kinds": list(p.kinds)}
    components: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        for party_name in item.parties:
            if party_name not in known:  # named by a module but not in the registry: jurisdiction unknown
                party_docs.setdefault(_slug(party_name), {"id": _slug(party_name), "name": party_name})
        components.append(_component(item, seen))
    return manifest_from_data({"manifest_version": "1", "name": name, "home": home,
                               "as_of": (as_of or date.today()).isoformat(),
                               "parties": list(party_docs.values()), "components": components})


def _component(item: InventoryItem, seen: set[str]) -> dict[str, Any]:
    cid = _slug(f"{item.module}-{item.kind}-{item.name}")
    while cid in seen:
        cid += "-2"
    seen.add(cid)
    layer = LAYER_OF.get(item.layer.lower(), item.layer if item.layer in LAYERS else "software")
    operator = _slug(item.parties[0]) if item.parties else None
    # For a model deployment the modules list (operator, developer): the developer supplies the weights.
    supplier = _slug(item.parties[1]) if len(item.parties) > 1 else operator
    detail = item.detail
    comp: dict[str, Any] = {"id": cid, "name": f"{item.kind} {item.name} ({item.module})", "layer": layer,
                            "supplier": supplier, "operator": operator, "holds_data": layer == "data",
                            "tags": [f"module:{item.module}", f"kind:{item.kind}"]}
    code = _code(item.jurisdiction)
    if code:
        comp["hosted_in"] = [code]
    if detail.get("licence"):
        comp["licence"] = str(detail["licence"])
    openness = {claim: detail[key] for claim, key in (("weights", "open_weights"), ("source", "open_source"))
                if isinstance(detail.get(key), bool)}
    if openness:
        comp["open"] = openness
    if detail.get("delivery") in ("installed", "service"):
        comp["delivery"] = detail["delivery"]
    if isinstance(detail.get("languages"), list):
        comp["languages"] = [str(x) for x in detail["languages"]]
    return comp
