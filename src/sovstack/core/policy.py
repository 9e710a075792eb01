"""Classification levels, residency rules, and the one ``decide`` every module asks.

A policy says, per level (``open`` < ``restricted`` < ``sensitive``): who may access data of
that level, how (download, or sandbox only), and where it may be processed (hosting
jurisdictions; the operator's and its ultimate parent's jurisdictions; whether exposure to a
foreign law with extraterritorial reach is acceptable). Every decision carries its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core import audit
from sovstack.core.context import Principal
from sovstack.core.errors import Refused
from sovstack.core.jurisdictions import catalogue, check_country, check_place
from sovstack.core.schemas import Strict
from sovstack.core.tables import PolicyVersion

LEVELS = ("open", "restricted", "sensitive")
Level = Literal["open", "restricted", "sensitive"]
Action = Literal["process", "download", "sandbox"]


def rank(level: str) -> int:
    """Order of a classification: open 0 < restricted 1 < sensitive 2."""
    return LEVELS.index(level)


class LevelRule(Strict):
    access: Literal["public", "members", "grant"] = Field(
        description="public: anyone; members: any signed-in user; grant: only with an access grant.")
    modes: list[Literal["download", "sandbox"]] = Field(min_length=1)
    hosting_jurisdictions: list[str] = Field(min_length=1, description="Countries, blocs or *.")
    operator_jurisdictions: list[str] = Field(min_length=1, description="Countries, blocs or *.")
    allow_foreign_extraterritorial: bool
    developer_jurisdictions: list[str] = Field(
        ["*"], min_length=1, description="Where a model's developer (its origin) and its parent may be from.")
    require_open_weights: bool = Field(False, description="Only models whose weights are published.")
    licences: list[str] = Field(["*"], min_length=1, description="Allowed model licences (SPDX ids, proprietary).")

    @field_validator("hosting_jurisdictions", "operator_jurisdictions", "developer_jurisdictions")
    @classmethod
    def _places(cls, values: list[str]) -> list[str]:
        return [check_place(v, "jurisdictions") for v in values]


class PolicyDocument(Strict):
    home_jurisdiction: str
    levels: dict[Level, LevelRule]

    @field_validator("home_jurisdiction")
    @classmethod
    def _home(cls, value: str) -> str:
        return check_country(value, "home_jurisdiction")

    @model_validator(mode="after")
    def _all_levels(self) -> PolicyDocument:
        missing = [lv for lv in LEVELS if lv not in self.levels]
        if missing:
            raise ValueError(f"levels: every level needs a rule; missing {missing}")
        return self


def default_policy(home: str) -> PolicyDocument:
    """A cautious starting point: open data anywhere, sensitive data only at home, sandbox only."""
    return PolicyDocument(home_jurisdiction=home, levels={
        "open": LevelRule(access="public", modes=["download", "sandbox"], hosting_jurisdictions=["*"],
                          operator_jurisdictions=["*"], allow_foreign_extraterritorial=True),
        "restricted": LevelRule(access="members", modes=["download", "sandbox"], hosting_jurisdictions=[home],
                                operator_jurisdictions=["*"], allow_foreign_extraterritorial=True),
        "sensitive": LevelRule(access="grant", modes=["sandbox"], hosting_jurisdictions=[home],
                               operator_jurisdictions=[home], allow_foreign_extraterritorial=False),
    })


class PartyFacts(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def jurisdiction(self) -> str: ...

    @property
    def parent_jurisdiction(self) -> str: ...


@dataclass(frozen=True)
class Resource:
    """What an action is about: data of a classification, perhaps at a site run by a party."""

    classification: str
    party: PartyFacts | None = None
    hosting_jurisdiction: str | None = None
    granted: bool = False
    label: str = ""
    developer: PartyFacts | None = None  # of a model: who made it
    open_weights: bool | None = None
    licence: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: list[str] = field(default_factory=list)

    def enforce(self, action: str, target: str = "") -> None:
        """Raise Refused, with the reasons, unless allowed."""
        if not self.allowed:
            raise Refused(f"refused by policy: {self.reasons[0]}" if self.reasons else "refused by policy",
                          action=action, target=target, reasons=self.reasons)


def decide(policy: PolicyDocument, subject: Principal | None, action: Action, resource: Resource) -> Decision:
    """Allowed or refused, with human-readable reasons for either."""
    if resource.classification not in LEVELS:
        return Decision(False, [f"unknown classification {resource.classification!r}"])
    rule = policy.levels[resource.classification]  # type: ignore[index]
    if action == "process":
        return _decide_processing(policy, rule, resource)
    return _decide_access(rule, subject, action, resource)


def _decide_access(rule: LevelRule, subject: Principal | None, action: str, resource: Resource) -> Decision:
    level = resource.classification
    refused: list[str] = []
    if action not in rule.modes:
        refused.append(f"{level} data may be used only by {' or '.join(rule.modes)}, not by {action}")
    if rule.access == "members" and subject is None:
        refused.append(f"{level} data is for signed-in members only")
    if rule.access == "grant" and not resource.granted and not (subject and subject.acts_as_admin):
        refused.append(f"{level} data needs an access grant, and none is held")
    if refused:
        return Decision(False, refused)
    who = {"public": "anyone", "members": "members", "grant": "grant holders"}[rule.access]
    return Decision(True, [f"{level} data is open to {who} by {action}"])


def _decide_processing(policy: PolicyDocument, rule: LevelRule, resource: Resource) -> Decision:
    level, cat, party = resource.classification, catalogue(), resource.party
    refused: list[str] = []
    hosting = resource.hosting_jurisdiction or (party.jurisdiction if party else None)
    allowed_hosts = cat.expand(rule.hosting_jurisdictions)
    if hosting is None:
        refused.append("the hosting jurisdiction is unknown")
    elif hosting not in allowed_hosts:
        refused.append(f"{level} data may be processed only where hosted in {_places(rule.hosting_jurisdictions)}; "
                       f"this site is hosted in {hosting}")
    if party is not None:
        allowed_ops = cat.expand(rule.operator_jurisdictions)
        for role, code in (("operator", party.jurisdiction), ("ultimate parent", party.parent_jurisdiction)):
            if code not in allowed_ops:
                refused.append(f"{level} data may be processed only by operators whose {role} is in "
                               f"{_places(rule.operator_jurisdictions)}; {party.name}'s {role} is in {code}")
        if not rule.allow_foreign_extraterritorial:
            for code in dict.fromkeys((party.jurisdiction, party.parent_jurisdiction)):
                if code != policy.home_jurisdiction:
                    for law in cat.laws_of(code):
                        refused.append(f"{level} data may not be exposed to foreign extraterritorial law; "
                                       f"{party.name} is subject to {law.name} ({law.citation})")
    elif rule.operator_jurisdictions != ["*"] or not rule.allow_foreign_extraterritorial:
        refused.append("the operating party is unknown, so its jurisdiction cannot be checked")
    refused.extend(_model_reasons(rule, resource))
    if refused:
        return Decision(False, refused)
    who = f" by {party.name} ({party.jurisdiction}, parent {party.parent_jurisdiction})" if party else ""
    return Decision(True, [f"{level} data may be processed in {hosting}{who}"])


def _model_reasons(rule: LevelRule, resource: Resource) -> list[str]:
    """What the rule says about the model itself: its origin, its weights, its licence."""
    level, found = resource.classification, []
    dev = resource.developer
    if dev is not None and rule.developer_jurisdictions != ["*"]:
        allowed = catalogue().expand(rule.developer_jurisdictions)
        for role, code in (("developer", dev.jurisdiction), ("developer's parent", dev.parent_jurisdiction)):
            if code not in allowed:
                found.append(f"{level} data may be processed only by models whose {role} is in "
                             f"{_places(rule.developer_jurisdictions)}; {dev.name}'s is in {code}")
    if rule.require_open_weights and resource.open_weights is False:
        found.append(f"{level} data may be processed only by open-weight models")
    if resource.licence is not None and rule.licences != ["*"] and resource.licence not in rule.licences:
        found.append(f"{level} data may be processed only by models licensed {', '.join(rule.licences)}; "
                     f"this one is {resource.licence}")
    return found


def _places(codes: list[str]) -> str:
    return "anywhere" if codes == ["*"] else ", ".join(codes)


# Storage of the policy -------------------------------------------------------------------------

def current(session: Session, home: str) -> PolicyDocument:
    """The policy in force: the newest stored version, else the default for ``home``."""
    row = session.scalar(select(PolicyVersion).order_by(PolicyVersion.id.desc()).limit(1))
    return PolicyDocument.model_validate(row.body) if row else default_policy(home)


def history(session: Session) -> list[PolicyVersion]:
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.id.desc())))


def save(session: Session, who: Principal, doc: PolicyDocument) -> PolicyVersion:
    """Store a new version of the policy; it is in force from the commit on."""
    who.require_admin("policy.update", "policy")
    row = PolicyVersion(body=doc.model_dump(mode="json"), created_by=who.actor)
    session.add(row)
    session.flush()
    audit.record(session, actor=who.actor, action="policy.update", target=f"policy:{row.id}",
                 detail=row.body)
    return row
