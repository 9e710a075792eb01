"""What binds one gateway call: the organisation it is made for, and the stricter of its key's rules and
that organisation's.

An organisation's floor, per-person rate limit, token budgets and transcript logging bind every call made
for it, whichever of its members' keys (or console sessions) makes it: a new key is no way out. The
organisation a call is made for:

- a key made for an organisation: that one, as long as the key's owner is still a member of it;
- any other key, or a console session: the caller's only organisation, or the one of theirs named in the
  ``X-Sovstack-Organisation`` header; a member of several who names none is refused, since every call is
  metered to one organisation;
- a person in no organisation calls under their key's own policy only.

Rate limits count per key (the key's own limit) and per person within the organisation (the organisation's
limit), so two keys share one person's allowance; tokens count per organisation and per person, never
per key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from sovstack.core import policy
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, RateLimited, Refused
from sovstack.gateway.facts import Snapshot
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
        keep_days=snap.keep_days.get(organisation_id, 0))


def _admit(session: Session, counters: Counters, leases: RateLeases, name: str, limit: int, now: datetime,
           message: str) -> None:
    reset = leases.admit(session, counters, name, limit, now)
    if reset is not None:
        raise RateLimited(f"{message}; resets in {reset} s", retry_after=reset)


def _spent(session: Session, counters: Counters, name: str, budget: tuple[int, str], now: datetime,
           message: str) -> str:
    tokens, period = budget
    win, reset = window(period, now)
    used = counters.get(session, name, win)
    if used >= tokens:
        raise RateLimited(f"{message} of {tokens} tokens per {period} is spent ({used} used); resets in {reset} s",
                          retry_after=reset)
    return period


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
    return periods
