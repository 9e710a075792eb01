"""The assessment as a CycloneDX 1.6 BOM with declarations, so the results travel with the bill of materials.

Each criterion becomes a requirement of a standard under ``definitions.standards``; each answer a claim
on its component with the evidence behind it; the attestation maps every requirement to its claims with
a conformance score (points / 100). Facts CycloneDX has no field for go in ``sovstack:`` properties.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sovstack.assess.criteria import CriteriaSet
from sovstack.assess.manifest import Manifest
from sovstack.assess.results import Assessment, Result


def attestation(manifest: Manifest, assessment: Assessment, criteria: CriteriaSet) -> dict[str, Any]:
    """A CycloneDX 1.6 JSON document: the manifest's components plus the assessment as declarations."""
    standard = f"standard:{criteria.id}@{criteria.version}"
    claims, evidence = _claims(assessment.results)
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "metadata": {"timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "tools": {"components": [{"type": "application", "name": "sovstack assess"}]},
                     "properties": _summary(assessment)},
        "components": [_component(c.id, c.name, c.layer, c.supplier, manifest) for c in manifest.components],
        "definitions": {"standards": [{
            "bom-ref": standard, "name": criteria.title, "version": criteria.version,
            "description": "; ".join(s.name for s in criteria.sources),
            "requirements": [{"bom-ref": f"{standard}/{c.id}", "identifier": c.id, "title": c.title,
                              "text": c.question} for c in criteria.criteria]}]},
        "declarations": {
            "assessors": [{"bom-ref": "assessor:sovstack", "thirdParty": False}],
            "attestations": [{"summary": f"Sovereignty assessment of {assessment.manifest}: {assessment.gate.summary}; "
                                         f"weighted score {assessment.score.value}",
                              "assessor": "assessor:sovstack", "map": _map(assessment.results, standard)}],
            "claims": claims, "evidence": evidence},
    }


def _summary(a: Assessment) -> list[dict[str, str]]:
    props = {"sovstack:assess:gate": str(a.gate.level), "sovstack:assess:score": str(a.score.value),
             "sovstack:assess:mode": a.mode, "sovstack:assess:criteria": a.criteria,
             "sovstack:assess:profile": a.profile, "sovstack:assess:home": a.home,
             "sovstack:assess:gaps": str(a.gaps.count)}
    props |= {f"sovstack:assess:pressure:{k}": str(v.value) for k, v in a.pressures.items()}
    return [{"name": k, "value": v} for k, v in props.items()]


def _component(cid: str, name: str, layer: str, supplier: str | None, manifest: Manifest) -> dict[str, Any]:
    kind = {"models": "machine-learning-model", "data": "data", "chips": "device", "compute": "platform",
            "network": "platform", "operations": "platform"}.get(layer, "application")
    out: dict[str, Any] = {"type": kind, "bom-ref": f"component:{cid}", "name": name,
                           "properties": [{"name": "sovstack:layer", "value": layer}]}
    party = next((p for p in manifest.parties if p.id == supplier), None)
    if party is not None:
        out["supplier"] = {"name": party.name, **({"address": {"country": party.jurisdiction}}
                                                  if party.jurisdiction else {})}
    return out


def _claims(results: list[Result]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    claims: list[dict[str, Any]] = []
    evidence: list[dict[str, Any]] = []
    for i, r in enumerate(results):
        refs = []
        for j, e in enumerate(r.evidence):
            ref = f"evidence:{i}:{j}"
            refs.append(ref)
            evidence.append({"bom-ref": ref, "propertyName": r.criterion, "description": f"{e.type}: {e.source}",
                             "created": f"{e.date}T00:00:00Z",
                             **({"expires": f"{e.expires}T00:00:00Z"} if e.expires else {})})
        claims.append({"bom-ref": f"claim:{i}", "target": f"component:{r.component}",
                       "predicate": f"{r.criterion} = {r.declared or 'unknown'}",
                       "reasoning": f"counted {r.counted or 'left out'}" + (f"; gap: {r.gap}" if r.gap else ""),
                       "evidence": refs})
    return claims, evidence


def _map(results: list[Result], standard: str) -> list[dict[str, Any]]:
    by_criterion: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        by_criterion.setdefault(r.criterion, []).append(i)
    out = []
    for criterion, idx in by_criterion.items():
        counted = [p for i in idx if (p := results[i].points) is not None]
        score = round(sum(counted) / len(counted) / 100, 3) if counted else 0.0
        gaps = sum(1 for i in idx if results[i].gap)
        out.append({"requirement": f"{standard}/{criterion}", "claims": [f"claim:{i}" for i in idx],
                    "conformance": {"score": score, "rationale": f"mean points over {len(counted)} answers"},
                    "confidence": {"score": round(1 - gaps / len(idx), 3),
                                   "rationale": f"{gaps} of {len(idx)} answers are gaps"}})
    return out
