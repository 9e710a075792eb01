"""Spend budgets of keys, people and organisations (tokens, or money in one currency, per period) and
the alerts they raise; who may set and read them.

Who may set a budget: on a key, its owner (only a new or lower one: a self-imposed limit) or a deployment
admin; on a person (all their keys and organisations), a deployment admin; on an organisation, its
org_admins or a deployment admin. The key's owner, the person, and the organisation's admins may read a
budget's status and its alerts.

A money budget counts only spend priced in its own currency: prices are never converted (an air-gapped
deployment has no exchange rates). Calls answered by deployments priced in another currency do not count
towards it; set one budget per currency in use to bound them all.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sovstack.core import audit, identity
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.errors import NotFound
from sovstack.gateway.facts import MICRO, SpendLimit, bump
from sovstack.gateway.metering import Counters, window
from sovstack.gateway.schemas import SpendBudgetPublic, SpendBudgetSet
from sovstack.gateway.tables import SpendAlert, SpendBudget


def _subject(session: Session, scope: str, ref: str) -> tuple[str, str]:
    """The stored subject of a budget (key prefix, user id, organisation id) and how people read it."""
    value: int | str = int(ref) if ref.isdigit() else ref
    if scope == "key":
        key = identity.get_api_key(session, ref)
        return key.prefix, f"key {key.prefix} ({key.name})"
    if scope == "person":
        user = identity.get_user(session, value)
        return str(user.id), user.email
    org = identity.get_organisation(session, value)
    return str(org.id), org.name


def _may_change(session: Session, who: Principal, row: SpendBudget | None, scope: str, subject: str,
                amount: float | None) -> None:
    """Refused unless ``who`` may set (``amount``) or remove (None) this budget; see the module's docstring."""
    action, target = "gateway.spend_budget", f"{scope}:{subject}"
    if scope == "organisation":
        who.require_role(int(subject), "org_admin", action=action, target=target)
        return
    if scope == "key" and identity.get_api_key(session, subject).user_id == who.user_id and amount is not None \
            and (row is None or amount <= row.amount):
        return  # a self-imposed limit, or a tighter one
    who.require_admin(action, target)


def set_budget(session: Session, who: Principal, data: SpendBudgetSet) -> SpendBudget:
    """Create or replace the budget of one subject in one unit (tokens or a currency)."""
    subject, _ = _subject(session, data.scope, data.subject)
    row = session.scalar(select(SpendBudget).where(SpendBudget.scope == data.scope, SpendBudget.subject == subject,
                                                   SpendBudget.unit == data.unit))
    _may_change(session, who, row, data.scope, subject, data.amount)
    row = row or SpendBudget(scope=data.scope, subject=subject, unit=data.unit)
    row.amount, row.period, row.alerts = data.amount, data.period, list(data.alerts)
    session.add(row)
    session.flush()
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.spend_budget", target=f"{data.scope}:{subject}",
                 detail={**data.model_dump(), "subject": subject, "id": row.id})
    return row


def remove_budget(session: Session, who: Principal, budget_id: int) -> None:
    row = session.get(SpendBudget, budget_id)
    if row is None:
        raise NotFound(f"no budget {budget_id}", field="budget")
    _may_change(session, who, row, row.scope, row.subject, None)
    session.delete(row)
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.spend_budget.remove",
                 target=f"{row.scope}:{row.subject}", detail={"id": budget_id, "unit": row.unit})


def _visible(session: Session, who: Principal) -> list[SpendBudget]:
    q = select(SpendBudget).order_by(SpendBudget.scope, SpendBudget.subject, SpendBudget.unit)
    if not who.acts_as_admin:
        mine = [k.prefix for k in identity.list_api_keys(session, who)] if who.user_id is not None else []
        admin_of = [str(o) for o, roles in who.roles.items() if "org_admin" in roles]
        q = q.where(or_(
            (SpendBudget.scope == "key") & SpendBudget.subject.in_(mine or [""]),
            (SpendBudget.scope == "person") & (SpendBudget.subject == str(who.user_id)),
            (SpendBudget.scope == "organisation") & SpendBudget.subject.in_(admin_of or [""])))
    return list(session.scalars(q))


def status(session: Session, who: Principal, counters: Counters,
           now: datetime | None = None) -> list[SpendBudgetPublic]:
    """The budgets ``who`` may read, each with what it has spent in its current period."""
    now = now or utcnow()
    out = []
    for row in _visible(session, who):
        limit = SpendLimit(row.id, row.scope, row.subject, row.unit, row.amount, row.period)
        win, reset = window(row.period, now)
        used = counters.get(session, limit.counter, win)
        out.append(SpendBudgetPublic(
            id=row.id, scope=row.scope, subject=row.subject, label=_label(session, row), unit=row.unit,
            amount=row.amount, period=row.period, alerts=list(row.alerts or []), window=win,
            spent=used if row.unit == "tokens" else round(used / MICRO, 6), resets_in_seconds=reset))
    return out


def _label(session: Session, row: SpendBudget) -> str:
    try:
        return _subject(session, row.scope, row.subject)[1]
    except NotFound:
        return f"{row.scope} {row.subject} (gone)"


def alerts(session: Session, who: Principal, limit: int = 100) -> list[SpendAlert]:
    """The alerts of the budgets ``who`` may read, newest first."""
    ids = [b.id for b in _visible(session, who)]
    if not ids:
        return []
    q = select(SpendAlert).where(SpendAlert.budget_id.in_(ids)).order_by(SpendAlert.id.desc()).limit(limit)
    return list(session.scalars(q))
