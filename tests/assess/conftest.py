"""Shared helpers for the assessor's tests: the shipped examples and a small manifest to vary."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

from sovstack.assess.manifest import Manifest
from sovstack.assess.validate import load_manifest_file

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "sovstack" / "assess" / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

SMALL: dict[str, Any] = {
    "manifest_version": "1", "name": "small", "home": "IN", "as_of": "2026-06-30",
    "parties": [{"id": "home-co", "name": "Home Co", "jurisdiction": "IN"},
                {"id": "us-co", "name": "US Co", "jurisdiction": "US"}],
    "components": [
        {"id": "gpu", "name": "GPU", "layer": "chips", "delivery": "installed", "supplier": "us-co",
         "operator": "home-co", "hosted_in": ["IN"], "remote_disable": False,
         "export_control": {"controlled": True, "regime": "us-ear"}},
        {"id": "saas", "name": "SaaS API", "layer": "software", "supplier": "us-co", "operator": "us-co",
         "hosted_in": ["US"], "remote_disable": True,
         "substitutes": [{"name": "Home alternative", "supplier": "home-co", "switch_days": 10}]},
        {"id": "app", "name": "App", "layer": "software", "supplier": "home-co", "operator": "home-co",
         "hosted_in": ["IN"], "open": {"source": True}, "remote_disable": False, "serves": 1,
         "depends_on": ["gpu", "saas"],
         "evidence": [{"claims": ["hosted_in", "remote_disable"], "type": "audit", "source": "audit 1",
                       "date": "2026-01-01", "confidence": "high"}]},
    ],
}


def small(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the small manifest, top-level keys replaced."""
    doc = deepcopy(SMALL)
    doc.update(changes)
    return doc


@pytest.fixture(scope="session")
def examples() -> dict[str, Manifest]:
    return {name: load_manifest_file(EXAMPLES / f"{name}.yaml")
            for name in ("national-cloud", "hyperscaler-region", "fully-domestic")}
