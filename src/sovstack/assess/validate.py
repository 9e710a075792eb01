"""Reading a manifest: parse, check every rule, and report all problems at once, each with its path.

A manifest is accepted only when it parses, matches the schema, names only parties, components,
jurisdictions and export regimes that exist, has no contradictory evidence and no dependency cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sovstack.assess.graph import find_cycles
from sovstack.assess.manifest import CLAIMS, Component, Manifest
from sovstack.core import documents
from sovstack.core.errors import BadDocument, BadInput
from sovstack.core.jurisdictions import catalogue


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, where it is (``components[3].supplier``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ManifestInvalid(BadInput):
    """A manifest with one or more problems; ``problems`` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(f"the manifest has {len(problems)} problem(s)", field="manifest",
                         reasons=[str(p) for p in problems])

    def body(self) -> dict[str, Any]:
        """The API error body, with every problem also as ``{"path", "message"}`` under ``problems``."""
        data = super().body()
        data["error"]["problems"] = [{"path": p.path, "message": p.message} for p in self.problems]
        return data

    def within(self, where: str) -> ManifestInvalid:
        """The same problems with their paths under ``where`` (``before.components[2].supplier``)."""
        return ManifestInvalid([Problem(f"{where}.{p.path}", p.message) for p in self.problems])


def parse_document(text: str, name: str = "manifest") -> Any:
    """YAML or JSON text as Python data, or ``ManifestInvalid`` with the one problem under ``name``."""
    try:
        return documents.load(text, name)
    except BadDocument as exc:  # reported like every other manifest problem, with its path
        raise ManifestInvalid([Problem(name, exc.problem)]) from exc


def load_manifest(text: str, name: str = "manifest") -> Manifest:
    """A checked manifest from YAML or JSON text, or ``ManifestInvalid`` naming every problem."""
    return manifest_from_data(parse_document(text, name))


def load_manifest_file(path: Path) -> Manifest:
    return load_manifest(documents.read_text(path), path.name)


def manifest_from_data(data: Any) -> Manifest:
    """A checked manifest from parsed data: schema first, then references, evidence and the graph."""
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestInvalid(schema_problems(exc)) from exc
    problems = list(check(manifest))
    if problems:
        raise ManifestInvalid(problems)
    return manifest


def schema_problems(exc: ValidationError) -> list[Problem]:
    """Every error of a pydantic validation, each as a problem with its path."""
    return [_schema_problem(e) for e in exc.errors()]


def _schema_problem(error: Any) -> Problem:
    path = ""
    for part in error.get("loc", ()):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return Problem(path or "manifest", error.get("msg", "invalid"))


def check(manifest: Manifest) -> Iterator[Problem]:
    """Every cross-reference, jurisdiction, evidence and graph problem of a schema-valid manifest."""
    yield from _check_jurisdiction(manifest.home, "home")
    yield from _check_parties(manifest)
    yield from _check_component_ids(manifest.components)
    ids = {c.id for c in manifest.components}
    party_ids = {p.id for p in manifest.parties}
    for i, comp in enumerate(manifest.components):
        at = f"components[{i}]"
        yield from _check_refs(comp, at, ids, party_ids)
        yield from _check_evidence(comp, at)
    for cycle in find_cycles({c.id: c.depends_on for c in manifest.components}):
        yield Problem("components", "dependency cycle: " + " → ".join([*cycle, cycle[0]]))


def _check_jurisdiction(code: str | None, path: str) -> Iterator[Problem]:
    if code is not None and code not in catalogue().countries:
        yield Problem(path, f"unknown jurisdiction code {code!r}: expected an ISO 3166-1 alpha-2 code")


def _check_parties(manifest: Manifest) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, party in enumerate(manifest.parties):
        if party.id in seen:
            yield Problem(f"parties[{i}].id", f"duplicate party id {party.id!r}")
        seen.add(party.id)
        yield from _check_jurisdiction(party.jurisdiction, f"parties[{i}].jurisdiction")
        yield from _check_jurisdiction(party.parent_jurisdiction, f"parties[{i}].parent_jurisdiction")


def _check_component_ids(components: list[Component]) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, comp in enumerate(components):
        if comp.id in seen:
            yield Problem(f"components[{i}].id", f"duplicate component id {comp.id!r}")
        seen.add(comp.id)


def _check_refs(comp: Component, at: str, ids: set[str], party_ids: set[str]) -> Iterator[Problem]:
    for role in ("supplier", "operator"):
        ref = getattr(comp, role)
        if ref is not None and ref not in party_ids:
            yield Problem(f"{at}.{role}", f"unknown party {ref!r} (component {comp.id!r})")
    for j, dep in enumerate(comp.depends_on):
        if dep not in ids:
            yield Problem(f"{at}.depends_on[{j}]", f"unknown component {dep!r} (component {comp.id!r})")
    for j, code in enumerate(comp.hosted_in):
        yield from _check_jurisdiction(code, f"{at}.hosted_in[{j}]")
    for j, sub in enumerate(comp.substitutes):
        if sub.component is not None and sub.component not in ids:
            yield Problem(f"{at}.substitutes[{j}].component", f"unknown component {sub.component!r}")
        if sub.supplier is not None and sub.supplier not in party_ids:
            yield Problem(f"{at}.substitutes[{j}].supplier", f"unknown party {sub.supplier!r}")
        for k, code in enumerate(sub.hosted_in):
            yield from _check_jurisdiction(code, f"{at}.substitutes[{j}].hosted_in[{k}]")
    if comp.export_control is not None and comp.export_control.regime is not None:
        regimes = {r.id for r in catalogue().regimes}
        if comp.export_control.regime not in regimes:
            yield Problem(f"{at}.export_control.regime",
                          f"unknown export regime {comp.export_control.regime!r}; known: {', '.join(sorted(regimes))}")


def _check_evidence(comp: Component, at: str) -> Iterator[Problem]:
    """Unknown claim names, expiry before date, and evidence that contradicts the claim or other evidence."""
    stated: dict[str, tuple[int, Any]] = {}
    for j, ev in enumerate(comp.evidence):
        where = f"{at}.evidence[{j}]"
        for claim in [*ev.claims, *ev.says]:
            if claim not in CLAIMS:
                yield Problem(where, f"unknown claim {claim!r}; claims are: {', '.join(CLAIMS)}")
        if ev.expires is not None and ev.expires < ev.date:
            yield Problem(f"{where}.expires", "expires before its date")
        for claim, value in ev.says.items():
            if claim not in CLAIMS:
                continue
            declared = _plain(getattr(comp, claim))
            if not _same(value, declared):
                yield Problem(where, f"contradictory evidence: says {claim} = {value!r} but the component declares "
                                     f"{declared!r} (component {comp.id!r})")
            elif claim in stated and not _same(stated[claim][1], value):
                yield Problem(where, f"contradictory evidence: says {claim} = {value!r} but "
                                     f"evidence[{stated[claim][0]}] says {stated[claim][1]!r} (component {comp.id!r})")
            stated.setdefault(claim, (j, value))


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return sorted(map(str, a)) == sorted(map(str, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same(v, b.get(k)) for k, v in a.items())
    return bool(a == b)


def problems_text(problems: Iterable[Problem]) -> str:
    return "\n".join(str(p) for p in problems)
