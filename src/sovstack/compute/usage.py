"""Usage the providers report, and the money and shares that follow from it: budget burn, caps, invoices."""

from __future__ import annotations

import csv
import html
import io
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sovstack.compute import allocations, programmes, providers, rounds
from sovstack.compute.schemas import UsageCreate, UsagePublic
from sovstack.compute.tables import Allocation, ComputeRequest, Programme, UsageReport
from sovstack.core import audit, identity
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, Conflict, Refused

EPSILON = 1e-6


def report(session: Session, who: Principal, data: UsageCreate) -> UsagePublic:
    """Record GPU-hours used on an allocation the caller's provider holds; never beyond what was allocated."""
    a = allocations.get_allocation(session, data.allocation_id)
    target = f"allocation:{a.id}"
    providers.require_staff(who, a.offer.provider, "compute.usage.report")
    if not who.has_scope("compute.report"):
        raise Refused("this API key lacks the compute.report scope", action="compute.usage.report", target=target,
                      reasons=[f"key {who.key_prefix} has scopes {sorted(who.scopes)}"])
    seen = session.scalar(select(UsageReport).where(UsageReport.allocation_id == a.id,
                                                    UsageReport.reference == data.reference))
    if seen is not None:
        if abs(seen.gpu_hours - data.gpu_hours) > EPSILON or seen.day != data.day:
            raise Conflict(f"report {data.reference!r} was already sent with {seen.gpu_hours:g} GPU-hours on "
                           f"{seen.day}", field="reference")
        return usage_public(seen, a)
    if a.status != "accepted":
        raise Conflict(f"allocation {a.id} is {a.status}; usage is reported only on accepted allocations",
                       field="allocation_id")
    if a.used_gpu_hours + data.gpu_hours > a.gpu_hours + EPSILON:
        raise BadInput(f"allocation {a.id} has {a.gpu_hours - a.used_gpu_hours:g} of {a.gpu_hours:g} GPU-hours "
                       f"left; this report says {data.gpu_hours:g}", field="gpu_hours")
    first, _ = providers.period_bounds(a.request.programme, a.start_period)
    if data.day < first:
        raise BadInput(f"allocation {a.id} starts on {first}", field="day")
    row = UsageReport(allocation_id=a.id, gpu_hours=data.gpu_hours, day=data.day, reference=data.reference,
                      reported_by=who.actor)
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # the same reference, sent twice at once
        session.rollback()
        raise Conflict(f"report {data.reference!r} is being recorded already", field="reference") from exc
    # One guarded UPDATE, so two reports racing each other can never add up beyond the allocation.
    added = session.execute(
        update(Allocation).where(Allocation.id == a.id, Allocation.status == "accepted",
                                 Allocation.used_gpu_hours + data.gpu_hours <= Allocation.gpu_hours + EPSILON)
        .values(used_gpu_hours=Allocation.used_gpu_hours + data.gpu_hours).execution_options(synchronize_session=False))
    if added.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise Conflict(f"allocation {a.id} changed while this report was recorded; send it again",
                       field="allocation_id")
    session.refresh(a)
    audit.record(session, actor=who.actor, action="compute.usage.report", target=target,
                 detail={"gpu_hours": data.gpu_hours, "day": str(data.day), "reference": data.reference})
    return usage_public(row, a)


def usage_public(row: UsageReport, a: Allocation) -> UsagePublic:
    return UsagePublic(id=row.id, allocation_id=a.id, gpu_hours=row.gpu_hours, day=row.day, reference=row.reference,
                       reported_by=row.reported_by, allocation_used=a.used_gpu_hours, allocation_gpu_hours=a.gpu_hours)


# The programme's dashboard ---------------------------------------------------------------------

def _programme_allocations(session: Session, programme: Programme) -> list[Allocation]:
    query = select(Allocation).join(Allocation.request).where(ComputeRequest.programme_id == programme.id)
    return list(session.scalars(query.order_by(Allocation.id)))


def budget(session: Session, programme: Programme) -> dict[str, object]:
    """Committed (live allocations, and what reclaimed ones used) and spent (used) subsidy, per category."""
    committed: dict[str, float] = defaultdict(float)
    spent: dict[str, float] = defaultdict(float)
    for a in _programme_allocations(session, programme):
        rate = programmes.rate_for(programme, a.request.category)
        used = a.used_gpu_hours * a.price * rate
        if a.status in rounds.LIVE:
            committed[a.request.category] += a.subsidy
        elif a.status == "reclaimed":
            committed[a.request.category] += used
        spent[a.request.category] += used
    total_committed, total_spent = sum(committed.values()), sum(spent.values())
    return {"currency": programme.currency, "budget": programme.budget, "committed": round(total_committed, 2),
            "spent": round(total_spent, 2), "left": round(programme.budget - total_committed, 2),
            "by_category": {c: {"committed": round(committed[c], 2), "spent": round(spent[c], 2),
                                "floor": programme.category_floor.get(c), "ceiling": programme.category_ceiling.get(c)}
                            for c in sorted(set(committed) | set(spent))}}


def shares(session: Session, programme: Programme, home: str) -> dict[str, object]:
    """Allocated GPU-hours per provider, corporate group, foreign control and chip vendor, against the caps."""
    live = [a for a in _programme_allocations(session, programme) if a.status in rounds.LIVE]
    total = sum(a.gpu_hours for a in live)
    by: dict[str, dict[str, float]] = {k: defaultdict(float) for k in ("provider", "group", "foreign", "chip_vendor")}
    for a in live:
        p = a.offer.provider
        by["provider"][p.name] += a.gpu_hours
        by["group"][p.corporate_group] += a.gpu_hours
        by["foreign"]["foreign-controlled" if providers.foreign_controlled(p, home) else "domestic"] += a.gpu_hours
        by["chip_vendor"][a.offer.chip_vendor] += a.gpu_hours
    out: dict[str, object] = {"total_gpu_hours": round(total, 2)}
    for kind, hours in by.items():
        cap = programme.caps.get(kind)
        out[kind] = [{"name": name, "gpu_hours": round(h, 2), "share": round(h / total, 4) if total else 0.0,
                      "cap": cap if kind != "foreign" or name != "domestic" else None}
                     for name, h in sorted(hours.items(), key=lambda kv: -kv[1])]
    return out


def utilisation(session: Session, programme: Programme) -> dict[str, float]:
    """How much of the allocated capacity is used, and how much of the offered capacity is allocated."""
    live = [a for a in _programme_allocations(session, programme) if a.status in rounds.LIVE]
    allocated = sum(a.gpu_hours for a in live)
    used = sum(a.used_gpu_hours for a in live)
    hours = programme.period_days * 24
    offered = sum(o.gpu_count * hours * len(providers.offer_periods(programme, o))
                  for o in providers.list_offers(session, include_withdrawn=False) if o.delivery == "delivered")
    return {"allocated_gpu_hours": round(allocated, 2), "used_gpu_hours": round(used, 2),
            "offered_gpu_hours": round(offered, 2), "used_share": round(used / allocated, 4) if allocated else 0.0,
            "allocated_share": round(allocated / offered, 4) if offered else 0.0,
            "idle_allocations": sum(1 for a in live if allocations.is_idle(a))}


def dashboard(session: Session, name: str, home: str) -> dict[str, object]:
    """Everything the operator watches: budget burn, shares against the caps, utilisation, review progress."""
    programme = programmes.get_programme(session, name)
    rnd = programmes.current_round(session, programme)
    return {"programme": programmes.programme_public(programme).model_dump(mode="json"),
            "budget": budget(session, programme), "shares": shares(session, programme, home),
            "utilisation": utilisation(session, programme),
            "review_progress": programmes.review_progress(session, rnd) if rnd else None}


# Invoices --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InvoiceLine:
    allocation: int
    request: str
    applicant: str
    provider: str
    gpu_type: str
    used_gpu_hours: float
    price: float
    cost: float
    subsidy: float
    applicant_share: float


def invoice(session: Session, who: Principal, programme_ref: str, *, provider: str | None = None,
            applicant: str | None = None) -> list[InvoiceLine]:
    """Used GPU-hours priced and split: per provider (what the programme and applicants owe it) or per applicant."""
    programme = programmes.get_programme(session, programme_ref)
    if (provider is None) == (applicant is None):
        raise BadInput("name a provider or an applicant organisation, not both", field="provider")
    _check_invoice_reader(session, who, provider, applicant)
    lines = []
    for a in _programme_allocations(session, programme):
        p, org = a.offer.provider, a.request.organisation
        if a.used_gpu_hours <= 0 or (provider and p.name != provider) or (applicant and org.name != applicant):
            continue
        cost = a.used_gpu_hours * a.price
        subsidy = cost * programmes.rate_for(programme, a.request.category)
        lines.append(InvoiceLine(a.id, a.request.title, org.name, p.name, a.offer.gpu_type, a.used_gpu_hours,
                                 a.price, round(cost, 2), round(subsidy, 2), round(cost - subsidy, 2)))
    return lines


def _check_invoice_reader(session: Session, who: Principal, provider: str | None, applicant: str | None) -> None:
    if who.acts_as_admin:
        return
    if provider:
        providers.require_staff(who, providers.get_provider(session, provider), "compute.invoices.read")
    elif applicant:
        org = identity.get_organisation(session, applicant)
        who.require_role(org.id, "org_admin", "steward", "reviewer", "member", action="compute.invoices.read",
                         target=f"organisation:{org.id}")


COLUMNS = ("allocation", "request", "applicant", "provider", "gpu_type", "used_gpu_hours", "price", "cost",
           "subsidy", "applicant_share")


def invoice_csv(lines: list[InvoiceLine]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for line in lines:
        writer.writerow([getattr(line, c) for c in COLUMNS])
    writer.writerow(["total", "", "", "", "", round(sum(x.used_gpu_hours for x in lines), 4), "",
                     round(sum(x.cost for x in lines), 2), round(sum(x.subsidy for x in lines), 2),
                     round(sum(x.applicant_share for x in lines), 2)])
    return buf.getvalue()


def invoice_html(lines: list[InvoiceLine], title: str, currency: str) -> str:
    """A printable, self-contained invoice (no external assets)."""
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(getattr(x, c)))}</td>" for c in COLUMNS) + "</tr>"
                   for x in lines)
    totals = (f"<tr class=total><td colspan=7>Total ({html.escape(currency)})</td>"
              f"<td>{sum(x.cost for x in lines):,.2f}</td><td>{sum(x.subsidy for x in lines):,.2f}</td>"
              f"<td>{sum(x.applicant_share for x in lines):,.2f}</td></tr>")
    style = ("body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse;width:100%}"
             "td,th{border:1px solid #999;padding:.3rem .5rem;text-align:left}.total{font-weight:bold}")
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{style}</style><h1>{html.escape(title)}</h1><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}{totals}</tbody></table></html>")
