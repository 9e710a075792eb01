"""HTTP API of the party registry and the shipped jurisdiction data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from sovstack.core import parties
from sovstack.core.api.deps import PrincipalDep, SessionDep, SettingsDep
from sovstack.core.context import unit_of_work
from sovstack.core.jurisdictions import catalogue
from sovstack.core.schemas import PartyCreate, PartyPublic, PartyUpdate

router = APIRouter(prefix="/api/v1", tags=["parties"])


@router.get("/parties")
def list_parties(session: SessionDep, who: PrincipalDep, settings: SettingsDep, kind: str | None = None,
                 jurisdiction: str | None = None) -> list[PartyPublic]:
    home = settings.home_jurisdiction
    return [parties.public(p, home) for p in parties.list_parties(session, kind=kind, jurisdiction=jurisdiction)]


@router.post("/parties", status_code=status.HTTP_201_CREATED)
def create_party(body: PartyCreate, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> PartyPublic:
    with unit_of_work(session, who):
        party = parties.create_party(session, who, body)
    return parties.public(party, settings.home_jurisdiction)


@router.get("/parties/{party_id}")
def get_party(party_id: int, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> PartyPublic:
    return parties.public(parties.get_party(session, party_id), settings.home_jurisdiction)


@router.patch("/parties/{party_id}")
def update_party(party_id: int, body: PartyUpdate, session: SessionDep, who: PrincipalDep,
                 settings: SettingsDep) -> PartyPublic:
    with unit_of_work(session, who):
        party = parties.update_party(session, who, party_id, body)
    return parties.public(party, settings.home_jurisdiction)


@router.get("/jurisdictions")
def jurisdictions(who: PrincipalDep) -> dict[str, Any]:
    """Countries, blocs, extraterritorial laws and export-control regimes, each with its source."""
    return catalogue().as_dict()


@router.get("/jurisdictions/{code}")
def jurisdiction(code: str, who: PrincipalDep) -> dict[str, Any]:
    cat = catalogue()
    code = code.upper()
    if code in cat.blocs:
        bloc = cat.blocs[code]
        return {"bloc": {**bloc.__dict__, "members": list(bloc.members)}}
    country = cat.country(code)
    return {
        "country": country.__dict__,
        "blocs": [b.code for b in cat.blocs.values() if code in b.members],
        "laws": [law.__dict__ for law in cat.laws_of(code)],
        "export_control_regimes": [r.__dict__ for r in cat.regimes if r.jurisdiction == code],
    }
