"""The live self-assessment: this deployment's own manifest, built from what every module publishes.

The deployment itself and its database are published here (through the assess plugin's
``sovstack_inventory``): the hook has no settings, so they name ``HOME_OPERATOR`` and say they run at
home; ``live_manifest`` then gives that operator the deployment's home jurisdiction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date

import pluggy
from sqlalchemy.orm import Session

from sovstack import __version__
from sovstack.assess.inventory import PartyLike, manifest_from_inventory
from sovstack.assess.manifest import Manifest
from sovstack.assess.service import AssessmentRun, full_assessment
from sovstack.core.parties import list_parties
from sovstack.core.plugins import InventoryItem, flatten
from sovstack.core.settings import Settings

HOME_OPERATOR = "Operator of this deployment"
AT_HOME = "at_home"  # detail flag: the component runs on the operator's own machines, at home


@dataclass
class HomeOperator:
    """The deployment's operator as a party: whoever runs sovstack, in the home jurisdiction."""

    jurisdiction: str
    name: str = HOME_OPERATOR
    ultimate_parent: str = ""
    parent_jurisdiction: str = ""
    kinds: list[str] = field(default_factory=lambda: ["operator", "storage_operator"])


def database_backend(session: Session) -> str:
    """``PostgreSQL`` or ``SQLite`` (or the dialect's own name), from the session's engine."""
    name = session.get_bind().dialect.name
    return {"postgresql": "PostgreSQL", "sqlite": "SQLite"}.get(name, name)


def deployment_items(session: Session) -> list[InventoryItem]:
    """The sovstack deployment itself (platform software) and its database (data storage)."""
    common = {AT_HOME: True, "delivery": "installed"}
    return [
        InventoryItem(module="core", kind="deployment", name="sovstack", layer="platform", parties=(HOME_OPERATOR,),
                      detail={**common, "version": __version__, "licence": "Apache-2.0", "open_source": True}),
        InventoryItem(module="core", kind="database", name=database_backend(session), layer="data",
                      parties=(HOME_OPERATOR,), detail={**common, "backend": database_backend(session)}),
    ]


def inventory_items(session: Session, plugins: pluggy.PluginManager) -> list[InventoryItem]:
    """Every module's inventory, in a stable order (module, layer, kind, name)."""
    items: list[InventoryItem] = flatten(plugins.hook.sovstack_inventory(session=session))
    return sorted(items, key=lambda i: (i.module, i.layer, i.kind, i.name))


def _at_home(items: Sequence[InventoryItem], home: str) -> list[InventoryItem]:
    return [replace(i, jurisdiction=home) if i.detail.get(AT_HOME) and not i.jurisdiction else i for i in items]


def live_manifest(session: Session, plugins: pluggy.PluginManager, settings: Settings,
                  as_of: date | None = None) -> Manifest:
    """This deployment as a checked manifest: inventory items as components, the party registry as parties."""
    home = settings.home_jurisdiction
    parties: list[PartyLike] = list(list_parties(session))
    if all(p.name != HOME_OPERATOR for p in parties):
        parties.append(HomeOperator(home))
    return manifest_from_inventory(_at_home(inventory_items(session, plugins), home), parties, home, as_of,
                                   name=settings.deployment_name)


def live_assessment(session: Session, plugins: pluggy.PluginManager, settings: Settings, *,
                    mode: str = "conservative", profile_name: str | None = None) -> AssessmentRun:
    """The live scorecard of this deployment, with every built-in drill run on it."""
    return full_assessment(live_manifest(session, plugins, settings), mode=mode, profile_name=profile_name,
                           scenarios=[])
