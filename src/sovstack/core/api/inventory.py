"""The live inventory: every component the registered modules manage, for the sovereignty assessor."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from sovstack.core.api.deps import PrincipalDep, SessionDep
from sovstack.core.plugins import InventoryItem, flatten

router = APIRouter(prefix="/api/v1", tags=["inventory"])


def collect(request: Request, session: Any) -> list[InventoryItem]:
    items: list[InventoryItem] = flatten(request.app.state.plugins.hook.sovstack_inventory(session=session))
    return sorted(items, key=lambda i: (i.module, i.layer, i.kind, i.name))


@router.get("/inventory")
def inventory(request: Request, session: SessionDep, who: PrincipalDep) -> list[dict[str, Any]]:
    """Components by module, kind and layer, with the parties behind them and their jurisdiction."""
    return [asdict(item) for item in collect(request, session)]
