"""Empanelled providers and their offers: who they are, where they sit, what they offer, and who may use them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.compute.schemas import OfferCreate, OfferPublic, OfferUpdate, ProviderCreate, ProviderPublic
from sovstack.compute.tables import ComputeOffer, ComputeProvider, Programme
from sovstack.core import audit, identity, parties, policy
from sovstack.core.context import Principal
from sovstack.core.db import flush_unique
from sovstack.core.errors import BadInput, NotFound

STAFF = ("org_admin", "steward", "reviewer", "member")  # anyone in the provider's organisation


def list_providers(session: Session) -> list[ComputeProvider]:
    return list(session.scalars(select(ComputeProvider).order_by(ComputeProvider.name)))


def get_provider(session: Session, ref: int | str) -> ComputeProvider:
    query = select(ComputeProvider).where(
        ComputeProvider.id == ref if isinstance(ref, int) else ComputeProvider.name == ref)
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"no provider {ref!r}", field="provider")
    return found


def create_provider(session: Session, who: Principal, data: ProviderCreate) -> ComputeProvider:
    """Empanel a provider (operator only): it must be a registered party; its staff an organisation."""
    who.require_admin("compute.providers.create", data.name)
    party = parties.get_party(session, data.party)
    org = identity.get_organisation(session, data.organisation) if data.organisation else None
    provider = ComputeProvider(name=data.name, party_id=party.id, organisation_id=org.id if org else None,
                               corporate_group=data.corporate_group or party.ultimate_parent or party.name,
                               datacentre_jurisdiction=data.datacentre_jurisdiction,
                               control_plane_jurisdiction=data.control_plane_jurisdiction)
    session.add(provider)
    flush_unique(session, "provider", "name", data.name)
    audit.record(session, actor=who.actor, action="compute.providers.create", target=f"provider:{provider.id}",
                 detail=data.model_dump())
    return provider


def foreign_controlled(provider: ComputeProvider, home: str) -> bool:
    """Owned, ultimately owned, or controlled (its control plane) from outside the home jurisdiction."""
    p = provider.party
    return any(code != home for code in (p.jurisdiction, p.parent_jurisdiction, provider.control_plane_jurisdiction))


def provider_public(provider: ComputeProvider, home: str) -> ProviderPublic:
    return ProviderPublic(
        id=provider.id, name=provider.name, party=provider.party.name,
        organisation=provider.organisation.name if provider.organisation else None,
        corporate_group=provider.corporate_group, jurisdiction=provider.party.jurisdiction,
        parent_jurisdiction=provider.party.parent_jurisdiction,
        datacentre_jurisdiction=provider.datacentre_jurisdiction,
        control_plane_jurisdiction=provider.control_plane_jurisdiction,
        foreign_controlled=foreign_controlled(provider, home),
        extraterritorial_laws=parties.exposure(provider.party, home),
        offers=len(provider.offers), created_at=provider.created_at)


def require_staff(who: Principal, provider: ComputeProvider, action: str) -> None:
    """The operator, or someone in the provider's own organisation."""
    if who.acts_as_admin:
        return
    if provider.organisation_id is None:
        who.require_admin(action, f"provider:{provider.id}")
    else:
        who.require_role(provider.organisation_id, *STAFF, action=action, target=f"provider:{provider.id}")


# Offers ----------------------------------------------------------------------------------------

def list_offers(session: Session, *, provider: str | None = None, include_withdrawn: bool = True) -> list[ComputeOffer]:
    query = select(ComputeOffer).join(ComputeOffer.provider).order_by(ComputeOffer.id)
    if provider:
        query = query.where(ComputeProvider.name == provider)
    offers = list(session.scalars(query))
    return offers if include_withdrawn else [o for o in offers if o.withdrawn_by is None]


def get_offer(session: Session, offer_id: int) -> ComputeOffer:
    offer = session.get(ComputeOffer, offer_id)
    if offer is None:
        raise NotFound(f"no offer {offer_id}", field="offer")
    return offer


def create_offer(session: Session, who: Principal, data: OfferCreate) -> ComputeOffer:
    provider = get_provider(session, data.provider)
    require_staff(who, provider, "compute.offers.create")
    values = data.model_dump(exclude={"provider"})
    offer = ComputeOffer(provider_id=provider.id, **values)
    session.add(offer)
    session.flush()
    audit.record(session, actor=who.actor, action="compute.offers.create", target=f"offer:{offer.id}",
                 detail=data.model_dump(mode="json"))
    return offer


def update_offer(session: Session, who: Principal, offer_id: int, data: OfferUpdate) -> ComputeOffer:
    offer = get_offer(session, offer_id)
    require_staff(who, offer.provider, "compute.offers.update")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if changes.get("delivery") == "delivered" and not (changes.get("benchmark") or offer.benchmark):
        raise BadInput("delivered capacity needs its benchmark evidence", field="benchmark")
    if "available_until" in changes and changes["available_until"] < offer.available_from:
        raise BadInput("must not be before available_from", field="available_until")
    for key, value in changes.items():
        setattr(offer, key, value)
    audit.record(session, actor=who.actor, action="compute.offers.update", target=f"offer:{offer.id}",
                 detail={k: str(v) for k, v in changes.items()})
    return offer


def offer_public(offer: ComputeOffer, home: str) -> OfferPublic:
    return OfferPublic(id=offer.id, provider=offer.provider.name, gpu_type=offer.gpu_type,
                       chip_vendor=offer.chip_vendor, gpu_count=offer.gpu_count, price=offer.price,
                       available_from=offer.available_from, available_until=offer.available_until,
                       delivery=offer.delivery, benchmark=offer.benchmark, withdrawn=offer.withdrawn_by is not None,
                       foreign_controlled=foreign_controlled(offer.provider, home),
                       jurisdiction=offer.provider.party.jurisdiction,
                       datacentre_jurisdiction=offer.provider.datacentre_jurisdiction)


# What an offer means inside a programme ------------------------------------------------------

def period_bounds(programme: Programme, period: int) -> tuple[date, date]:
    """First and last day (inclusive) of a programme period."""
    first = programme.start + timedelta(days=period * programme.period_days)
    return first, first + timedelta(days=programme.period_days - 1)


def offer_periods(programme: Programme, offer: ComputeOffer) -> tuple[int, ...]:
    """The programme periods an offer covers whole."""
    found = []
    for t in range(programme.periods):
        first, last = period_bounds(programme, t)
        if offer.available_from <= first and last <= offer.available_until:
            found.append(t)
    return tuple(found)


@dataclass(frozen=True)
class Operator:
    """The provider as policy sees it: its party's name and owners' jurisdictions."""

    name: str
    jurisdiction: str
    parent_jurisdiction: str


def residency(doc: policy.PolicyDocument, classification: str, provider: ComputeProvider) -> policy.Decision:
    """May data of this classification be processed by this provider (data centre and control plane)?"""
    party = Operator(provider.name, provider.party.jurisdiction, provider.party.parent_jurisdiction)
    reasons: list[str] = []
    for where, label in ((provider.datacentre_jurisdiction, "data centre"),
                         (provider.control_plane_jurisdiction, "control plane")):
        decision = policy.decide(doc, None, "process", policy.Resource(classification, party=party,
                                                                        hosting_jurisdiction=where))
        if not decision.allowed:
            reasons.extend(f"{r} ({label})" if "hosted in" in r else r for r in decision.reasons)
    if reasons:
        return policy.Decision(False, list(dict.fromkeys(reasons)))
    return policy.Decision(True, [f"{classification} data may be processed by {provider.name}"])
