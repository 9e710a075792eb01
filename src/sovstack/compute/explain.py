"""Explanations: where each request went and why, or which constraints kept it out, with numbers."""

from __future__ import annotations

from collections import Counter

from sovstack.compute.columns import Problem
from sovstack.compute.ledger import Ledger
from sovstack.compute.model import Explanation, Request

CAP_LABEL = {"cap:provider": "provider", "cap:group": "group", "cap:foreign": "foreign",
             "cap:chip_vendor": "chip_vendor"}


def explain(ledger: Ledger) -> dict[int, Explanation]:
    """One explanation per request decided in this round."""
    problem = ledger.problem
    out = {}
    for i, request in enumerate(problem.requests):
        if i in ledger.chosen:
            out[request.id] = _placed(ledger, i, ledger.chosen[i])
        else:
            out[request.id] = _left_out(ledger, i, request)
    return out


def _offer_label(problem: Problem, o: int) -> str:
    offer = problem.offers[o]
    return f"offer {offer.id} ({offer.provider} {offer.gpu_type} at {offer.price:.2f}/GPU-h)"


def _span(first: int, length: int) -> str:
    return f"period {first}" if length == 1 else f"periods {first}–{first + length - 1}"


def _placed(ledger: Ledger, i: int, c: int) -> Explanation:
    problem, cols = ledger.problem, ledger.problem.columns
    without = ledger.copy()
    without.remove(c)
    price = problem.offers[cols.offer[c]].price
    cheaper = [k for k in problem.by_request[i] if problem.offers[cols.offer[k]].price < price]
    where = f"placed on {_offer_label(problem, cols.offer[c])} for {_span(cols.start[c], cols.length[c])}"
    blocked = {k: without.blockers(k) for k in cheaper}
    kinds = Counter(kind for b in blocked.values() for kind in b)
    if not cheaper:
        why = "the cheapest eligible offer with room"
    elif all(blocked.values()):
        offers = sorted({problem.offers[cols.offer[k]].id for k in cheaper})
        why = (f"cheaper eligible offers {_ids(offers)} were blocked by "
               + ", ".join(kind for kind, _ in kinds.most_common()))
    else:
        why = "cheaper offers had room, but this one leaves room for higher-value requests elsewhere"
    return Explanation(problem.requests[i].id, True, tuple(k for k, _ in kinds.most_common()), f"{where}: {why}.")


def _ids(ids: list[int], limit: int = 5) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _left_out(ledger: Ledger, i: int, request: Request) -> Explanation:
    problem = ledger.problem
    offer_ids = {o.id for o in problem.offers}
    eligible = [o for o in problem.offers if o.id in request.eligible]
    if not eligible or not request.eligible & offer_ids:
        return Explanation(request.id, False, ("eligibility",),
                           "not placed: no offer in this round is eligible for it (policy, residency or GPU type).")
    largest = max(eligible, key=lambda o: o.gpus)
    if largest.gpus < request.gpus:
        return Explanation(request.id, False, ("gang",),
                           f"not placed: it needs {request.gpus} GPUs at once and the largest eligible offer "
                           f"({largest.id}, {largest.provider}) has {largest.gpus}.")
    if not problem.by_request[i]:
        d = problem.duration_periods(request)
        return Explanation(request.id, False, ("window",),
                           f"not placed: it needs {d} consecutive period(s) within periods "
                           f"{request.earliest}–{request.latest}, and no eligible offer with {request.gpus} "
                           "GPUs is available that long inside the window.")
    return _blocked(ledger, i, request)


def _blocked(ledger: Ledger, i: int, request: Request) -> Explanation:
    problem, cols = ledger.problem, ledger.problem.columns
    blocked = {c: ledger.blockers(c) for c in problem.by_request[i]}
    if not all(blocked.values()):
        c = next(c for c, b in blocked.items() if not b)
        return Explanation(request.id, False, ("merit",),
                           f"not placed: {_offer_label(problem, cols.offer[c])} still had room, but its value "
                           f"({cols.value[c]:,.0f}) did not earn a place within the solve "
                           "(lower merit than those placed).")
    kinds = Counter(kind for b in blocked.values() for kind in b)
    binding = tuple(kind for kind, _ in kinds.most_common())
    details = [_detail(ledger, i, blocked, kind) for kind in binding[:2]]
    text = (f"not placed: all {len(blocked)} eligible (offer, start) option(s) are blocked — "
            + "; ".join(details) + ".")
    return Explanation(request.id, False, binding, text)


def _detail(ledger: Ledger, i: int, blocked: dict[int, list[str]], kind: str) -> str:
    problem, cols, r = ledger.problem, ledger.problem.columns, ledger.problem.round
    request = problem.requests[i]
    mine = [c for c, b in blocked.items() if kind in b]
    c = mine[0]
    if kind == "capacity":
        offers = sorted({problem.offers[cols.offer[k]].id for k in mine})
        o, first = cols.offer[c], cols.start[c]
        free = min(ledger.free[o][t] for t in range(first, first + cols.length[c]))
        return (f"capacity on offer(s) {_ids(offers)} (it needs {request.gpus} GPUs; offer "
                f"{problem.offers[o].id} has {free} free in {_span(first, cols.length[c])})")
    if kind == "budget":
        return f"budget (its subsidy {cols.subsidy[c]:,.2f}, {r.budget - ledger.subsidy:,.2f} left)"
    if kind == "category_ceiling":
        ceiling = r.category_ceiling[request.category]
        left = ceiling - ledger.category.get(request.category, 0.0)
        return f"category {request.category} ceiling {ceiling:,.2f} ({left:,.2f} left, it needs {cols.subsidy[c]:,.2f})"
    cap_kind = CAP_LABEL[kind]
    key = next(k for k in problem.offer_caps[cols.offer[c]] if k[0] == cap_kind)
    share = ledger.load.get(key, 0.0) / ledger.total if ledger.total else 0.0
    return (f"{kind} ({key[1]} already holds {share:.1%} of allocated GPU-hours; the cap is "
            f"{problem.limits[cap_kind]:.0%})")
