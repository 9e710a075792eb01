"""Criteria and weight profiles are data: versioned YAML, checked against the answer functions on load."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sovstack.assess.answers import ANSWERS
from sovstack.assess.manifest import CLAIMS, LAYERS
from sovstack.core import documents
from sovstack.core.errors import BadInput, NotFound

PRESSURES: tuple[str, ...] = ("data_protection", "service_resilience", "security_oversight",
                              "economic_development", "vendor_independence", "cultural_language")
PRESSURE_TITLES = {
    "data_protection": "Data protection", "service_resilience": "Service resilience",
    "security_oversight": "Security and oversight", "economic_development": "Economic development",
    "vendor_independence": "Vendor independence", "cultural_language": "Cultural and language preservation",
}
DEFAULT_CRITERIA = "sovstack-2026.1"
DEFAULT_PROFILE = "eu-csf-document"


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rung(Frozen):
    """One answer on a criterion's ladder."""

    answer: str
    points: float = Field(ge=0, le=100)
    level: int = Field(ge=0, le=4)
    text: str


class Criterion(Frozen):
    id: str
    objective: str
    title: str
    question: str
    answer: str
    claims: tuple[str, ...]
    layers: tuple[str, ...] = LAYERS
    pressures: tuple[str, ...]
    ladder: tuple[Rung, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Criterion:
        rule = ANSWERS.get(self.answer)
        if rule is None:
            raise ValueError(f"{self.id}: unknown answer function {self.answer!r}")
        rungs = [r.answer for r in self.ladder]
        if sorted(rungs) != sorted(rule.answers):
            raise ValueError(f"{self.id}: the ladder {rungs} must list exactly the answers {list(rule.answers)}")
        for name, known in (("claims", CLAIMS), ("layers", LAYERS), ("pressures", PRESSURES)):
            unknown = set(getattr(self, name)) - set(known)
            if unknown:
                raise ValueError(f"{self.id}: unknown {name} {sorted(unknown)}")
        return self

    def rung(self, answer: str) -> Rung:
        return next(r for r in self.ladder if r.answer == answer)

    def below(self, answer: str) -> Rung:
        """The rung one step worse than ``answer`` (by points, then level), or the worst rung itself."""
        ordered = self.ordered
        i = [r.answer for r in ordered].index(answer)
        return ordered[min(i + 1, len(ordered) - 1)]

    @property
    def ordered(self) -> tuple[Rung, ...]:
        return tuple(sorted(self.ladder, key=lambda r: (-r.points, -r.level)))

    @property
    def worst(self) -> Rung:
        return self.ordered[-1]


class Source(Frozen):
    name: str
    url: str = ""


class CriteriaSet(Frozen):
    id: str
    version: str
    title: str
    sources: tuple[Source, ...]
    objectives: dict[str, str]
    gate_exempt_layers: tuple[str, ...] = ()
    criteria: tuple[Criterion, ...]

    @model_validator(mode="after")
    def _objectives_known(self) -> CriteriaSet:
        unknown = {c.objective for c in self.criteria} - set(self.objectives)
        if unknown:
            raise ValueError(f"criteria name unknown objectives {sorted(unknown)}")
        return self

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


class Profile(Frozen):
    """Weights per objective; objectives with no assessed criterion are left out and the rest renormalised."""

    id: str
    title: str
    source: str
    weights: dict[str, float]


def _data(name: str) -> str:
    return resources.files("sovstack.assess").joinpath(f"data/{name}").read_text("utf-8")


def _parse(text: str, what: str) -> Any:
    return documents.load_yaml(text, what)


def criteria_from_text(text: str, what: str = "criteria") -> CriteriaSet:
    """A criteria set from YAML text, refused with the first problem's path when it is inconsistent."""
    try:
        return CriteriaSet.model_validate(_parse(text, what))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadInput(f"{what}: {where}: {first['msg']}".replace(": : ", ": ")) from exc


@cache
def builtin_criteria(name: str = DEFAULT_CRITERIA) -> CriteriaSet:
    """A criteria set shipped with sovstack, by name (``sovstack-2026.1``)."""
    try:
        text = _data(f"criteria-{name}.yaml")
    except FileNotFoundError as exc:
        raise NotFound(f"no built-in criteria set {name!r}; shipped: {', '.join(builtin_criteria_names())}",
                       field="criteria") from exc
    return criteria_from_text(text, f"criteria-{name}.yaml")


def builtin_criteria_names() -> list[str]:
    folder = resources.files("sovstack.assess").joinpath("data")
    return sorted(p.name[len("criteria-"):-len(".yaml")] for p in folder.iterdir()
                  if p.name.startswith("criteria-") and p.name.endswith(".yaml"))


def load_criteria(ref: str | Path | None = None) -> CriteriaSet:
    """A built-in criteria set by name, or one from a YAML file path."""
    if ref is None:
        return builtin_criteria()
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return criteria_from_text(documents.read_text(path), path.name)
    return builtin_criteria(str(ref))


@cache
def profiles() -> dict[str, Profile]:
    """The shipped weight profiles, by id."""
    raw = _parse(_data("profiles.yaml"), "profiles.yaml")
    return {p["id"]: Profile.model_validate(p) for p in raw["profiles"]}


def profile(name: str | None = None) -> Profile:
    found = profiles().get(name or DEFAULT_PROFILE)
    if found is None:
        raise NotFound(f"no weight profile {name!r}; shipped: {', '.join(profiles())}", field="profile")
    return found
