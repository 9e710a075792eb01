"""The party registry: every organisation that supplies or operates part of the stack."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core import audit
from sovstack.core.context import Principal
from sovstack.core.db import flush_unique
from sovstack.core.errors import NotFound
from sovstack.core.jurisdictions import catalogue
from sovstack.core.schemas import PartyCreate, PartyPublic, PartyUpdate
from sovstack.core.tables import Party


def list_parties(session: Session, *, kind: str | None = None, jurisdiction: str | None = None) -> list[Party]:
    parties = list(session.scalars(select(Party).order_by(Party.name)))
    if kind:
        parties = [p for p in parties if kind in p.kinds]
    if jurisdiction:
        code = jurisdiction.upper()
        parties = [p for p in parties if code in (p.jurisdiction, p.parent_jurisdiction)]
    return parties


def get_party(session: Session, ref: int | str) -> Party:
    """By id, or by exact name."""
    party = session.get(Party, ref) if isinstance(ref, int) else session.scalar(select(Party).where(Party.name == ref))
    if party is None:
        raise NotFound(f"no party {ref!r}", field="party")
    return party


def create_party(session: Session, who: Principal, data: PartyCreate) -> Party:
    who.require_admin("parties.create", data.name)
    values = data.model_dump()
    # A party with no parent named is its own ultimate parent.
    values["parent_jurisdiction"] = values["parent_jurisdiction"] or values["jurisdiction"]
    party = Party(**values)
    session.add(party)
    flush_unique(session, "party", "name", data.name)
    audit.record(session, actor=who.actor, action="parties.create", target=f"party:{party.id}", detail=values)
    return party


def update_party(session: Session, who: Principal, ref: int | str, data: PartyUpdate) -> Party:
    party = get_party(session, ref)
    who.require_admin("parties.update", f"party:{party.id}")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    for key, value in changes.items():
        setattr(party, key, value)
    audit.record(session, actor=who.actor, action="parties.update", target=f"party:{party.id}", detail=changes)
    return party


def exposure(party: Party, home: str) -> list[str]:
    """Foreign laws with extraterritorial reach that bind the party, through itself or its parent."""
    found: list[str] = []
    for code in dict.fromkeys((party.jurisdiction, party.parent_jurisdiction)):
        if code == home:
            continue
        found.extend(f"{law.name} ({law.citation}, {law.jurisdiction})" for law in catalogue().laws_of(code))
    return found


def public(party: Party, home: str) -> PartyPublic:
    out = PartyPublic.model_validate(party)
    out.extraterritorial_laws = exposure(party, home)
    return out
