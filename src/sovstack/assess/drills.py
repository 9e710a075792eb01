"""Disruption drills: propagate a scenario's shocks along the dependency graph, fail over, measure service.

A component is available again at ``A(c) = max(own(c), A(d) for each dependency d)``, where ``own``
is 0 when the shock does not stop it, the quickest switch to a substitute the shock spares when it
does, and never when there is none. The times are computed in one pass, earliest first (Knuth's
generalisation of Dijkstra's algorithm to max/min rules), so a 10,000-component stack takes
milliseconds and a cycle could never loop (manifests with cycles are refused before this anyway).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field

from sovstack.assess.manifest import Component, Manifest
from sovstack.assess.results import ComponentOutcome, DrillResult, TimelineStep
from sovstack.assess.scenarios import Matcher, Scenario, Shock
from sovstack.assess.stack import Stack

NEVER = math.inf
EVENTS_PER_STEP = 8


@dataclass
class Hits:
    """What the shocks did directly: stopped (with the note), degraded, exposed."""

    stopped: dict[str, str] = field(default_factory=dict)
    degraded: dict[str, str] = field(default_factory=dict)
    exposed: dict[str, str] = field(default_factory=dict)


def drill(manifest: Manifest | Stack, scenario: Scenario) -> DrillResult:
    """Run one scenario: direct hits, failovers, knock-on stops, residual service and time to recover."""
    stack = manifest if isinstance(manifest, Stack) else Stack(manifest)
    matchers = [(Matcher(shock.when, stack), shock) for shock in scenario.shocks]
    hits = _direct_hits(stack, matchers)
    own, via, refs = _own_times(stack, hits, matchers, scenario.untested_factor)
    available = _availability(stack, own, refs)
    weights = service_weights(stack)
    outcomes = _outcomes(stack, hits, available, via)
    timeline = _timeline(stack, weights, available, hits, scenario.degraded_service)
    down = [available[c] for c in weights if available[c] > 0]
    finite = [t for t in down if t != NEVER]
    data_holders = [c.id for c in stack.manifest.components if c.holds_data]
    return DrillResult(
        scenario=scenario.id, title=scenario.title, effective=scenario.effective, sources=scenario.sources,
        residual_now=timeline[0].residual, residual_final=timeline[-1].residual,
        time_to_recover_days=max(finite) if finite else (None if down else 0.0),
        fully_recovered=NEVER not in down, outcomes=outcomes, timeline=tuple(timeline),
        exposed_share=round(len(hits.exposed) / len(data_holders), 3) if data_holders else 0.0)


def _direct_hits(stack: Stack, matchers: list[tuple[Matcher, Shock]]) -> Hits:
    hits = Hits()
    for comp in stack.manifest.components:
        for matcher, shock in matchers:
            if not matcher.hits(comp):
                continue
            effect: str = shock.effect
            note = shock.note
            if effect == "cut_off":
                effect = "stop" if comp.delivery == "service" or comp.remote_disable else "degrade"
            if effect == "stop":
                hits.stopped[comp.id] = note
            elif effect == "degrade":
                hits.degraded[comp.id] = note + " — keeps running, no updates"
            elif comp.keys_held_by != "customer":
                hits.exposed[comp.id] = note
            break
    return hits


Refs = dict[str, list[tuple[str, float, str]]]


def _own_times(stack: Stack, hits: Hits, matchers: list[tuple[Matcher, Shock]],
               untested_factor: float) -> tuple[dict[str, float], dict[str, str], Refs]:
    """Per stopped component: the quickest outside substitute the shocks spare; in-manifest ones wait."""
    own: dict[str, float] = {}
    via: dict[str, str] = {}
    refs: Refs = defaultdict(list)
    for cid in hits.stopped:
        comp = stack.components[cid]
        best = NEVER
        for sub in comp.substitutes:
            days = sub.switch_days * (1.0 if sub.tested else untested_factor)
            if sub.component is not None:
                refs[sub.component].append((cid, days, sub.name))
            elif not any(m.hits_substitute(comp, sub) for m, _ in matchers) and days < best:
                best, via[cid] = days, sub.name
        own[cid] = best
    return own, via, refs


def _availability(stack: Stack, own: dict[str, float], refs: Refs) -> dict[str, float]:
    """Day each component is available again (0: never down; ``NEVER``: lost for good)."""
    comps = stack.manifest.components
    waiting = {c.id: len(c.depends_on) for c in comps}
    latest_dep = dict.fromkeys(waiting, 0.0)
    own_best = {c.id: own.get(c.id, 0.0) for c in comps}
    own_done: set[str] = set()
    available: dict[str, float] = {}
    heap: list[tuple[float, int, str]] = [(t, 0, cid) for cid, t in own_best.items() if t != NEVER]
    heapq.heapify(heap)
    dependents = stack.dependents
    while heap:
        t, kind, cid = heapq.heappop(heap)
        if kind == 0:
            if cid in own_done:
                continue
            own_done.add(cid)
        else:
            if cid in available:
                continue
            available[cid] = t
            for dep in dependents[cid]:
                waiting[dep] -= 1
                latest_dep[dep] = max(latest_dep[dep], t)
                if waiting[dep] == 0 and dep in own_done:
                    heapq.heappush(heap, (max(own_best[dep], latest_dep[dep]), 1, dep))
            for target, days, _name in refs.get(cid, ()):
                candidate = max(t, days)
                if target not in own_done and candidate < own_best[target]:
                    own_best[target] = candidate
                    heapq.heappush(heap, (candidate, 0, target))
            continue
        if waiting[cid] == 0:
            heapq.heappush(heap, (max(t, latest_dep[cid]), 1, cid))
    return {c.id: available.get(c.id, NEVER) for c in comps}


def service_weights(stack: Stack) -> dict[str, float]:
    """Who delivers the service: components with ``serves`` set, else those nothing depends on, equally."""
    declared = {c.id: c.serves for c in stack.manifest.components if c.serves > 0}
    if declared:
        total = sum(declared.values())
        return {cid: w / total for cid, w in declared.items()}
    tops = [cid for cid, users in stack.dependents.items() if not users]
    return {cid: 1.0 / len(tops) for cid in tops} if tops else {}


def _outcomes(stack: Stack, hits: Hits, available: dict[str, float], via: dict[str, str]) -> tuple[
        ComponentOutcome, ...]:
    out: list[ComponentOutcome] = []
    for comp in stack.manifest.components:
        cid, t = comp.id, available[comp.id]
        when = None if t == NEVER else t
        if cid in hits.stopped:
            if t == NEVER:
                out.append(ComponentOutcome(cid, "lost", hits.stopped[cid], None))
            else:
                out.append(ComponentOutcome(cid, "failed_over", hits.stopped[cid], when, via.get(cid)
                                            or _in_manifest_substitute(comp, available)))
        elif t > 0:
            out.append(ComponentOutcome(cid, "stopped", f"depends on {_culprit(comp, available)}", when))
        elif cid in hits.degraded:
            out.append(ComponentOutcome(cid, "degraded", hits.degraded[cid], None))
        elif cid in hits.exposed:
            out.append(ComponentOutcome(cid, "exposed", hits.exposed[cid], None))
    return tuple(out)


def _in_manifest_substitute(comp: Component, available: dict[str, float]) -> str | None:
    subs = [s for s in comp.substitutes if s.component is not None and available[s.component] != NEVER]
    return min(subs, key=lambda s: available[s.component or ""]).name if subs else None


def _culprit(comp: Component, available: dict[str, float]) -> str:
    return max(comp.depends_on, key=lambda d: available[d]) if comp.depends_on else "?"


def _timeline(stack: Stack, weights: dict[str, float], available: dict[str, float], hits: Hits,
              degraded_service: float) -> list[TimelineStep]:
    """Residual service (0–1) from day 0 to the last recovery, one step per day something comes back."""
    value = {cid: w * (degraded_service if cid in hits.degraded else 1.0) for cid, w in weights.items()}
    days = sorted({available[cid] for cid in weights if available[cid] not in (0.0, NEVER)})
    back: dict[float, list[str]] = defaultdict(list)
    for cid in weights:
        back[available[cid]].append(cid)
    steps = [TimelineStep(0.0, _residual(value, available, 0.0), _names(_day0_events(hits, back)))]
    for day in days:
        steps.append(TimelineStep(day, _residual(value, available, day), _names([f"{c} back" for c in back[day]])))
    return steps


def _residual(value: dict[str, float], available: dict[str, float], day: float) -> float:
    return round(sum(v for cid, v in value.items() if available[cid] <= day), 4)


def _day0_events(hits: Hits, back: dict[float, list[str]]) -> list[str]:
    events = [f"{c} stopped" for c in hits.stopped] + [f"{c} degraded" for c in hits.degraded]
    events += [f"{c} exposed" for c in hits.exposed]
    return events + [f"{c} lost" for c in back.get(NEVER, []) if c not in hits.stopped]


def _names(events: list[str]) -> tuple[str, ...]:
    if len(events) <= EVENTS_PER_STEP:
        return tuple(events)
    return (*events[:EVENTS_PER_STEP], f"and {len(events) - EVENTS_PER_STEP} more")
