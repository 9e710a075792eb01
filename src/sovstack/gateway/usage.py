"""Who used the gateway how much: grouped totals and a daily series, for API, CLI and console charts."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core.context import Principal
from sovstack.gateway.schemas import UsagePoint, UsageReport, UsageRow
from sovstack.gateway.tables import Usage

GROUPS = {"organisation": Usage.organisation_id, "model": Usage.model, "deployment": Usage.deployment,
          "key": Usage.key_prefix}


def report(session: Session, who: Principal, *, by: str, since: datetime,
           organisation_id: int | None = None) -> UsageReport:
    """Usage since a time, grouped; admins see everyone, members only their organisations'."""
    q = select(GROUPS[by], Usage.tokens_in, Usage.tokens_out, Usage.cost, Usage.outcome, Usage.latency_ms,
               Usage.at).where(Usage.at >= since)
    if organisation_id is not None:
        who.require_role(organisation_id, "org_admin", "steward", "reviewer", "member",
                         action="gateway.usage", target=f"organisation:{organisation_id}")
        q = q.where(Usage.organisation_id == organisation_id)
    elif not who.acts_as_admin:
        q = q.where(Usage.organisation_id.in_(list(who.roles) or [-1]))
    groups: dict[str, list[Any]] = defaultdict(list)
    daily: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for group, t_in, t_out, cost, outcome, latency, at in session.execute(q):
        groups[str(group) if group is not None else "(none)"].append((t_in, t_out, cost, outcome, latency))
        day = daily[at.strftime("%Y-%m-%d")]
        day[0] += 1
        day[1] += t_in + t_out
        day[2] += cost
    rows = [UsageRow(group=g, requests=len(items), tokens_in=sum(i[0] for i in items),
                     tokens_out=sum(i[1] for i in items), cost=round(sum(i[2] for i in items), 6),
                     errors=sum(1 for i in items if i[3] != "ok"),
                     p50_latency_ms=round(statistics.median(i[4] for i in items), 2))
            for g, items in sorted(groups.items())]
    points = [UsagePoint(day=d, requests=int(v[0]), tokens=int(v[1]), cost=round(v[2], 6))
              for d, v in sorted(daily.items())]
    return UsageReport(since=since, by=by, rows=rows, daily=points)
