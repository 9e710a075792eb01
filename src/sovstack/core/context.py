"""Who is acting (the Principal) and the unit of work every state change runs in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from sovstack.core import audit
from sovstack.core.errors import Refused

ORG_ROLES = ("org_admin", "steward", "reviewer", "member")
CORE_SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class Principal:
    """An authenticated actor: a user through a key or a console session, or the local operator."""

    user_id: int | None
    email: str
    is_admin: bool
    roles: dict[int, frozenset[str]] = field(default_factory=dict)
    scopes: frozenset[str] = frozenset({"*"})
    key_prefix: str | None = None
    organisation_id: int | None = None

    @classmethod
    def system(cls, name: str = "cli") -> Principal:
        """The operator at the server's own shell: full rights, recorded under its own name."""
        return cls(user_id=None, email=name, is_admin=True)

    @property
    def actor(self) -> str:
        """How this principal appears in the audit log."""
        return f"{self.email} ({self.key_prefix})" if self.key_prefix else self.email

    def has_scope(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes

    @property
    def acts_as_admin(self) -> bool:
        return self.is_admin and self.has_scope("admin")

    def has_role(self, organisation_id: int, *roles: str) -> bool:
        """True for a deployment admin, or a member of the organisation holding one of ``roles``."""
        if self.acts_as_admin:
            return True
        held = self.roles.get(organisation_id, frozenset())
        return bool(held & set(roles)) if roles else bool(held)

    def require_admin(self, action: str, target: str = "") -> None:
        if not self.is_admin:
            raise Refused("only a deployment admin may do this", action=action, target=target,
                          reasons=[f"{self.email} is not a deployment admin"])
        if not self.has_scope("admin"):
            raise Refused("this API key lacks the admin scope", action=action, target=target,
                          reasons=[f"key {self.key_prefix} has scopes {sorted(self.scopes)}"])

    def require_role(self, organisation_id: int, *roles: str, action: str, target: str = "") -> None:
        if not self.has_role(organisation_id, *roles):
            wanted = " or ".join(("admin", *roles))
            raise Refused(f"this needs the role {wanted} in organisation {organisation_id}",
                          action=action, target=target,
                          reasons=[f"{self.email} holds {sorted(self.roles.get(organisation_id, set()))} there"])


@contextmanager
def unit_of_work(session: Session, principal: Principal) -> Iterator[Session]:
    """Commit on success; on a refusal, undo the change but keep an audit event of the refusal."""
    try:
        yield session
        session.commit()
    except Refused as exc:
        session.rollback()
        record_refusal(session, principal.actor, exc)
        raise
    except BaseException:
        session.rollback()
        raise


def record_refusal(session: Session, actor: str, exc: Refused) -> None:
    """Write the audit event of a refusal (once) and commit it."""
    if exc.audited:
        return
    audit.record(session, actor=actor, action=exc.action or "refused", target=exc.target,
                 outcome="refused", reasons=exc.reasons or [exc.message])
    session.commit()
    exc.audited = True
