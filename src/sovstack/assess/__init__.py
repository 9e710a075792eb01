"""The sovereignty assessor: manifests, criteria, scoring, drills, exit readiness, diff and reports.

The engine holds no database or web code; ``service`` is the layer the CLI, API and console call.
"""

from sovstack.assess.inventory import manifest_from_inventory
from sovstack.assess.manifest import Manifest
from sovstack.assess.results import Assessment, DrillResult, ExitFinding
from sovstack.assess.scoring import assess
from sovstack.assess.validate import ManifestInvalid, load_manifest

__all__ = ["Assessment", "DrillResult", "ExitFinding", "Manifest", "ManifestInvalid", "assess", "load_manifest",
           "manifest_from_inventory"]
