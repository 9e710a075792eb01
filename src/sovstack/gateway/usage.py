"""Who used the gateway how much: grouped totals and a daily series, for API, CLI and console charts."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core.context import Principal
from sovstack.gateway.metering import REFUSALS
from sovstack.gateway.schemas import UsagePoint, UsageReport, UsageRow
from sovstack.gateway.tables import Usage

GROUPS = {"organisation": Usage.organisation_id, "model": Usage.model, "deployment": Usage.deployment,
          "key": Usage.key_prefix}


def report(session: Session, who: Principal, *, by: str, since: datetime,
           organisation_id: int | None = None) -> UsageReport:
    """Usage since a time, grouped; admins see everyone, members only their organisations'."""
    q = select(GROUPS[by], Usage.tokens_in, Usage.tokens_out, Usage.cost, Usage.currency, Usage.outcome,
               Usage.latency_ms, Usage.at).where(Usage.at >= since)
    if organisation_id is not None:
        who.require_role(organisation_id, "org_admin", "steward", "reviewer", "member",
                         action="gateway.usage", target=f"organisation:{organisation_id}")
        q = q.where(Usage.organisation_id == organisation_id)
    elif not who.acts_as_admin:
        q = q.where(Usage.organisation_id.in_(list(who.roles) or [-1]))
    groups: dict[str, list[Any]] = defaultdict(list)
    daily: dict[str, list[Any]] = defaultdict(lambda: [0, 0, defaultdict(float)])
    for group, t_in, t_out, cost, currency, outcome, latency, at in session.execute(q):
        groups[str(group) if group is not None else "(none)"].append((t_in, t_out, cost, currency, outcome, latency))
        day = daily[at.strftime("%Y-%m-%d")]
        day[0] += 1
        day[1] += t_in + t_out
        if cost:
            day[2][currency] += cost
    rows = [_row(g, items) for g, items in sorted(groups.items())]
    points = [UsagePoint(day=d, requests=int(v[0]), tokens=int(v[1]), costs=_rounded(v[2]))
              for d, v in sorted(daily.items())]
    return UsageReport(since=since, by=by, rows=rows, daily=points)


def _rounded(costs: dict[str, float]) -> dict[str, float]:
    return {c: round(v, 6) for c, v in sorted(costs.items())}


def _row(group: str, items: list[Any]) -> UsageRow:
    costs: dict[str, float] = defaultdict(float)
    for i in items:
        if i[2]:
            costs[i[3]] += i[2]
    single = len(costs) == 1
    return UsageRow(group=group, requests=len(items), tokens_in=sum(i[0] for i in items),
                    tokens_out=sum(i[1] for i in items), cost=round(sum(costs.values()), 6) if single else 0.0,
                    currency=next(iter(costs)) if single else ("mixed" if costs else ""), costs=_rounded(costs),
                    errors=sum(1 for i in items if i[4] != "ok"),
                    refused=sum(1 for i in items if i[4] in REFUSALS),
                    p50_latency_ms=round(statistics.median(i[5] for i in items), 2))


def money(costs: dict[str, float], digits: int = 4) -> str:
    """Costs as people read them, each with its currency: ``0.0123 USD + 4.5000 EUR``; ``-`` when none."""
    return " + ".join(f"{v:.{digits}f} {c}" for c, v in sorted(costs.items())) or "-"
