"""What binds one gateway call: the organisation it is made for, and the stricter of its key's rules and
that organisation's.

An organisation's floor, per-person rate limit, token budgets, transcript logging and stored responses bind
every call made for it, whichever of its members' keys (or console sessions) makes it: a new key is no way
out. The organisation a call is made for:

- a key made for an organisation: that one, as long as the key's owner is still a member of it;
- any other key, or a console session: the caller's only organisation, or the one of theirs named in the
  ``X-Sovstack-Organisation`` header; a member of several who names none is refused, since every call is
  metered to one organisation;
- a person in no organisation calls under their key's own policy only.

Rate limits count per key (the key's own limit) and per person within the organisation (the organisation's
limit), so two keys share one person's allowance; tokens count per organisation and per person, never
per key.

Spend budgets (tokens, or money in one currency, per day, week or month) bind a call from its key, its
person (across all their keys and organisations) and its organisation, each independently: a second key
is no way out of its person's budget. A budget refuses a call once it is already spent; the call that
crosses it is answered in full and may overrun it by its own size. A key may also name the models it may
call, its tokens per minute (counted like a budget, after each call) and its calls in flight at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from sovstack.core import policy
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, RateLimited, Refused
from sovstack.gateway.facts import MICRO, Snapshot, SpendLimit
from sovstack.gateway.metering import Counters, RateLeases, person_counter, window

ORGANISATION_HEADER = "x-sovstack-organisation"


@dataclass(frozen=True)
class Binding:
    """The rules one call runs under, each the stricter of the key's and the organisation's."""

    organisation_id: int | None
    person_id: int | None
    default_classification: str = "open"
    floor_classification: str = "open"
    key_requests_per_minute: int | None = None
    person_requests_per_minute: int | None = None
    budget: tuple[int, str] | None = None  # the organisation's tokens per period
    person_budget: tuple[int, str] | None = None  # each person's tokens per period
    keep_days: int = 0  # > 0: the organisation keeps prompts and completions this long
    response_days: int = 0  # > 0: the organisation keeps Responses API answers this long (gateway/stored.py)
    spend: tuple[SpendLimit, ...] = ()  # the key's, the person's and the organisation's budgets
    models: frozenset[str] | None = None  # the key's allowlist; None: every model
    tokens_per_minute: int | None = None  # the key's
    max_concurrency: int | None = None  # the key's calls in flight at once


class OverLimit(RateLimited):
    """A limit refused the call (429); ``outcome`` is what its usage row records."""

    def __init__(self, message: str, *, retry_after: int, outcome: str) -> None:
        super().__init__(message, retry_after=retry_after, reasons=[message])
        self.outcome = outcome


@dataclass(frozen=True)
class Periods:
    """The budget periods a call's tokens are charged to once it is answered."""

    organisation: str | None = None
    person: str | None = None


def _refused(message: str, target: str, *reasons: str) -> Refused:
    return Refused(message, action="gateway.organisation", target=target, reasons=list(reasons) or [message])


def _asked(value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        raise BadInput(f"{ORGANISATION_HEADER} must be an organisation id, not {value[:40]!r}",
                       field=ORGANISATION_HEADER)
    return int(value)


def organisation_of(who: Principal, asked: str = "") -> int | None:
    """The organisation a call is made for (see the module's docstring); Refused when it cannot be one.

    ``who.roles`` must be loaded: membership is checked on every call, so a person who left an
    organisation no longer spends its budget with a key made while they were in it.
    """
    wanted = _asked(asked.strip())
    mine = sorted(who.roles)
    if who.organisation_id is not None:
        target = f"organisation:{who.organisation_id}"
        if who.organisation_id not in who.roles:
            raise _refused(f"key {who.key_prefix} was made for organisation {who.organisation_id}, which no "
                                f"longer counts {who.email} as a member", target)
        if wanted is not None and wanted != who.organisation_id:
            raise _refused(f"key {who.key_prefix} is for organisation {who.organisation_id}; it cannot call "
                                f"for organisation {wanted}", f"organisation:{wanted}")
        return who.organisation_id
    if wanted is not None:
        if wanted not in who.roles:
            raise _refused(f"{who.email} is not a member of organisation {wanted}", f"organisation:{wanted}",
                           f"{who.email} belongs to organisations {mine or 'none'}")
        return wanted
    if len(mine) > 1:
        raise _refused(f"{who.email} belongs to several organisations: name the one this call is for in the "
                            f"{ORGANISATION_HEADER} header, or use a key made for one of them", "",
                       f"{who.email} belongs to organisations {mine}")
    return mine[0] if mine else None


def _stricter(a: str, b: str) -> str:
    return a if policy.rank(a) >= policy.rank(b) else b


def bind(snap: Snapshot, who: Principal, organisation_id: int | None) -> Binding:
    """The key's policy combined with its organisation's: the stricter floor, both rate limits, the budgets."""
    key = snap.keys.get(who.key_prefix or "")
    binding = _bind_organisation(snap, who, organisation_id)
    spend = _spend_of(snap, who, organisation_id)
    if not spend and (key is None or (key.models is None and not key.tokens_per_minute
                                      and not key.max_concurrency)):
        return binding  # the common case: nothing of spend control configured, no copy made
    return replace(binding, spend=spend, models=key.models if key else None,
                   tokens_per_minute=key.tokens_per_minute if key else None,
                   max_concurrency=key.max_concurrency if key else None)


def _spend_of(snap: Snapshot, who: Principal, organisation_id: int | None) -> tuple[SpendLimit, ...]:
    if not snap.spend:  # the common case: no budgets at all, three dictionary misses saved
        return ()
    found: tuple[SpendLimit, ...] = ()
    for scope, subject in (("key", who.key_prefix), ("person", who.user_id), ("organisation", organisation_id)):
        if subject is not None and subject != "":
            found += snap.spend.get((scope, str(subject)), ())
    return found


def _bind_organisation(snap: Snapshot, who: Principal, organisation_id: int | None) -> Binding:
    key = snap.keys.get(who.key_prefix or "")
    if organisation_id is None:
        if key is None:
            return Binding(None, who.user_id)
        return Binding(None, who.user_id, key.default_classification, key.floor_classification,
                       key.requests_per_minute)
    org = snap.orgs.get(organisation_id)
    floor = _stricter(key.floor_classification if key else "open", org.floor_classification if org else "open")
    person_budget = None
    if org is not None and org.tokens_per_person is not None:
        person_budget = (org.tokens_per_person, org.tokens_period)
    return Binding(
        organisation_id, who.user_id, default_classification=key.default_classification if key else "open",
        floor_classification=floor, key_requests_per_minute=key.requests_per_minute if key else None,
        person_requests_per_minute=org.requests_per_minute_per_person if org else None,
        budget=snap.budgets.get(organisation_id), person_budget=person_budget,
        keep_days=snap.keep_days.get(organisation_id, 0), response_days=snap.response_days.get(organisation_id, 0))


def _admit(session: Session, counters: Counters, leases: RateLeases, name: str, limit: int, now: datetime,
           message: str) -> None:
    reset = leases.admit(session, counters, name, limit, now)
    if reset is not None:
        raise OverLimit(f"{message}; resets in {reset} s", retry_after=reset, outcome="rate_limited")


def _spent(session: Session, counters: Counters, name: str, budget: tuple[int, str], now: datetime,
           message: str) -> str:
    tokens, period = budget
    win, reset = window(period, now)
    used = counters.get(session, name, win)
    if used >= tokens:
        raise OverLimit(f"{message} of {tokens} tokens per {period} is spent ({used} used); resets in {reset} s",
                        retry_after=reset, outcome="over_budget")
    return period


def amount(unit: str, units: int) -> str:
    """A counter's value as people read it: ``1200 tokens``, ``0.25 EUR``."""
    return f"{units} tokens" if unit == "tokens" else f"{units / MICRO:.6g} {unit}"


def _within_budget(session: Session, counters: Counters, budget: SpendLimit, now: datetime) -> None:
    win, reset = window(budget.period, now)
    used = counters.get(session, budget.counter, win)
    if used >= budget.limit:
        whose = {"key": "key", "person": "person", "organisation": "organisation"}[budget.scope]
        raise OverLimit(f"the {whose} budget of {amount(budget.unit, budget.limit)} per {budget.period} for "
                        f"{budget.scope} {budget.subject} is spent ({amount(budget.unit, used)} used); resets in "
                        f"{reset} s", retry_after=reset, outcome="over_budget")


def tpm_counter(key_prefix: str) -> str:
    return f"tpm:{key_prefix}"


def allowed_model(binding: Binding, who: Principal, model: str) -> None:
    """Refused unless the key's allowlist (if any) names the model."""
    if binding.models is not None and model not in binding.models:
        raise Refused(f"key {who.key_prefix} may not call the model {model!r}", action="gateway.model",
                      target=f"model:{model}", reasons=[f"key {who.key_prefix} may call only "
                                                         f"{', '.join(sorted(binding.models)) or 'no model'}"])


def admit(session: Session, counters: Counters, leases: RateLeases, who: Principal, binding: Binding,
          now: datetime) -> Periods:
    """Count the call against every rate limit that binds it and check its budgets; RateLimited when over."""
    org, person = binding.organisation_id, binding.person_id
    if binding.person_requests_per_minute and org is not None and person is not None:
        _admit(session, counters, leases, person_counter("rpm", org, person), binding.person_requests_per_minute,
               now, f"organisation {org} allows {binding.person_requests_per_minute} requests per minute per "
                    f"person, across all their keys, and {who.email} reached it")
    if binding.key_requests_per_minute:
        _admit(session, counters, leases, f"rpm:{who.key_prefix}", binding.key_requests_per_minute, now,
               f"rate limit of {binding.key_requests_per_minute} requests per minute reached for key "
               f"{who.key_prefix}")
    periods = Periods()
    if binding.budget is not None and org is not None:
        periods = Periods(organisation=_spent(session, counters, f"tokens:{org}", binding.budget, now,
                                              "the organisation's token budget"))
    if binding.person_budget is not None and org is not None and person is not None:
        periods = Periods(periods.organisation, _spent(
            session, counters, person_counter("tokens", org, person), binding.person_budget, now,
            f"{who.email}'s share of organisation {org}'s tokens, across all their keys,"))
    if binding.tokens_per_minute and who.key_prefix:
        win, reset = window("minute", now)
        used = counters.get(session, tpm_counter(who.key_prefix), win)
        if used >= binding.tokens_per_minute:
            raise OverLimit(f"key {who.key_prefix} used {used} of its {binding.tokens_per_minute} tokens per minute; "
                            f"resets in {reset} s", retry_after=reset, outcome="rate_limited")
    for budget in binding.spend:
        _within_budget(session, counters, budget, now)
    return periods


class Inflight:
    """Calls in flight per key, in this process: the key's ``max_concurrency`` counts per server process.

    Kept in memory rather than in the shared counters so that a process that dies cannot leave slots taken
    for ever; with N worker processes a key may have up to N times its limit in flight.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}

    def acquire(self, key_prefix: str, limit: int) -> bool:
        with self._lock:
            held = self._count.get(key_prefix, 0)
            if held >= limit:
                return False
            self._count[key_prefix] = held + 1
            return True

    def release(self, key_prefix: str) -> None:
        with self._lock:
            held = self._count.get(key_prefix, 0) - 1
            if held > 0:
                self._count[key_prefix] = held
            else:
                self._count.pop(key_prefix, None)

    def held(self, key_prefix: str) -> int:
        return self._count.get(key_prefix, 0)
