"""The dependency graph: cycles (reported, never looped on) and who depends on whom."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycles(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every dependency cycle, as the components in it (Tarjan's strongly connected components, iteratively).

    Edges to nodes not in ``edges`` are ignored: they are reported as unknown references elsewhere.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in edges:
                    continue
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                cycles.extend(_pop_component(node, stack, on_stack, edges))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return cycles


def _pop_component(node: str, stack: list[str], on_stack: set[str],
                   edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    members: list[str] = []
    while True:
        top = stack.pop()
        on_stack.discard(top)
        members.append(top)
        if top == node:
            break
    if len(members) > 1 or node in edges[node]:
        return [_cycle_through(node, set(members), edges)]
    return []


def _cycle_through(start: str, members: set[str], edges: Mapping[str, Sequence[str]]) -> list[str]:
    """One shortest path start → … → start inside a strongly connected set (breadth first)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for target in edges[node]:
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return list(reversed(path))
                if target in members and target not in parent:
                    parent[target] = node
                    nxt.append(target)
        frontier = nxt
    return [start]


def dependents(edges: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """For each component, the components that depend on it directly."""
    out: dict[str, list[str]] = {node: [] for node in edges}
    for node, targets in edges.items():
        for target in targets:
            out[target].append(node)
    return out
