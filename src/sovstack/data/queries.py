"""Sandbox queries as a member runs them: grants checked at use, the query run locked down, all recorded.

Which tables a query may name: open datasets for every member; restricted and sensitive ones only
under a live grant (not expired, not revoked), re-checked against the policy for the grant's
organisation at every query. Sensitive datasets are always aggregate-only, for everyone. Every query
— answered, refused or failed — is kept in the querier's history, shown to the datasets' stewards,
and audited with its SQL, parse hash, grants, dataset versions, rows out and suppressed cells.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core import audit, identity
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, Refused, SovstackError
from sovstack.core.settings import Settings
from sovstack.data import access, ingest
from sovstack.data.ingest import object_path
from sovstack.data.sandbox import GrantedTable, Limits, QueryResult, run_query
from sovstack.data.service import STEWARDS, current_version, get_visible
from sovstack.data.tables import Dataset, SandboxQuery

AUDIT_SQL_CHARS = 10_000


@dataclass
class Use:
    """One dataset a query names, with the version and grant it would be read under."""

    dataset: Dataset
    table: GrantedTable
    version: int
    grant: int | None


@dataclass
class Outcome:
    result: QueryResult | None
    record: SandboxQuery
    uses: list[Use] = field(default_factory=list)


def _named(session: Session, sql: str) -> list[Dataset]:
    """The datasets whose names appear as words in the SQL (the checker decides what the query reads)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql.lower()))
    return list(session.scalars(select(Dataset).where(Dataset.name.in_(words)).order_by(Dataset.name)))


def _use(session: Session, who: Principal, settings: Settings, dataset: Dataset) -> Use:
    """The dataset as a granted table, or Refused: no data yet, no live grant, or the policy says no."""
    version = current_version(dataset)
    if version is None:
        raise BadInput(f"{dataset.name} has no data yet", field="sql")
    grant = None
    if dataset.classification != "open" and not who.acts_as_admin:
        grant = access.live_grant(session, who.user_id, dataset.id, "download", "sandbox")
        if grant is None:
            raise Refused(f"no live grant on {dataset.name} (never granted, expired or revoked): request access",
                          action="data.sandbox.query", target=f"dataset:{dataset.name}",
                          reasons=[f"{dataset.name} is {dataset.classification} data"])
        if grant.organisation_id is not None:
            access.policy_check(session, settings, dataset, identity.get_organisation(session, grant.organisation_id),
                                "sandbox")
    mode: Literal["full", "aggregate"] = "aggregate" if dataset.classification == "sensitive" else "full"
    objects, entity = settings.home / "objects", dataset.entity_column or None
    most = ingest.max_rows_per_entity(objects, version.sha256, entity) if mode == "aggregate" and entity else None
    table = GrantedTable(dataset.name, object_path(objects, version.sha256), mode, entity_column=entity,
                         k=dataset.k_threshold, max_rows_per_entity=most or None)
    return Use(dataset, table, version.number, grant.id if grant else None)


def run(session: Session, who: Principal, settings: Settings, sql: str, limits: Limits) -> Outcome:
    """Run ``sql`` for ``who`` and commit its history row and audit event, whatever happened.

    This is its own unit of work: a refused or failing query is recorded and committed first, then its
    error is raised for the caller to answer (already audited).
    """
    started = time.perf_counter()
    record = SandboxQuery(user_id=who.user_id or 0, sql=sql, outcome="failed")
    uses: list[Use] = []
    named = _named(session, sql)
    result: QueryResult | None = None
    error: SovstackError | None = None
    try:
        if who.user_id is None:
            raise BadInput("sandbox queries are run by members (a user's key or console session)", field="user")
        for dataset in named:
            uses.append(_use(session, who, settings, dataset))
        result = run_query(sql, [u.table for u in uses], limits)
    except SovstackError as exc:
        error = exc
    resolved = {u.dataset.name for u in uses}
    record.datasets = [{"name": u.dataset.name, "version": u.version, "grant": u.grant} for u in uses] + [
        {"name": d.name, "version": None, "grant": None} for d in named if d.name not in resolved]
    record.elapsed_ms = int((time.perf_counter() - started) * 1000)
    if result is not None:
        record.outcome, record.parse_hash = "ok", result.parse_hash
        record.rows_out, record.cells_suppressed = result.rows_out, len(result.suppressed)
    else:
        record.outcome = "refused" if isinstance(error, Refused) else "failed"
        record.message = error.message if error else ""
    if record.user_id:
        session.add(record)
        session.flush()
    audit.record(session, actor=who.actor, action="data.sandbox.query",
                 target=",".join(f"dataset:{d.name}" for d in named) or "sandbox",
                 outcome="ok" if result is not None else ("refused" if record.outcome == "refused" else "failed"),
                 reasons=error.reasons if error else [],
                 detail={"query": record.id, "sql": sql[:AUDIT_SQL_CHARS], "parse_hash": record.parse_hash,
                         "datasets": record.datasets, "rows_out": record.rows_out,
                         "cells_suppressed": record.cells_suppressed, "error": record.message})
    session.commit()
    if error is not None:
        if isinstance(error, Refused):
            error.audited = True
        raise error
    return Outcome(result, record, uses)


def history(session: Session, who: Principal, limit: int = 50) -> list[SandboxQuery]:
    """The principal's own queries, newest first."""
    return list(session.scalars(select(SandboxQuery).where(SandboxQuery.user_id == who.user_id)
                                .order_by(SandboxQuery.id.desc()).limit(limit)))


def on_dataset(session: Session, who: Principal, name: str, limit: int = 100) -> list[SandboxQuery]:
    """Every query that named the dataset, newest first: for its stewards."""
    dataset = get_visible(session, who, name)
    who.require_role(dataset.publisher_id, *STEWARDS, action="data.sandbox.history", target=f"dataset:{name}")
    rows = session.scalars(select(SandboxQuery).order_by(SandboxQuery.id.desc()).limit(limit * 20))
    return [q for q in rows if any(d.get("name") == name for d in q.datasets)][:limit]


def public(q: SandboxQuery) -> dict[str, Any]:
    return {"id": q.id, "user_id": q.user_id, "sql": q.sql, "parse_hash": q.parse_hash, "datasets": q.datasets,
            "outcome": q.outcome, "message": q.message, "rows_out": q.rows_out,
            "cells_suppressed": q.cells_suppressed, "elapsed_ms": q.elapsed_ms, "at": q.at.isoformat()}


def result_public(outcome: Outcome) -> dict[str, Any]:
    r = outcome.result
    assert r is not None
    return {"query": outcome.record.id, "columns": r.columns, "rows": r.rows, "truncated": r.truncated,
            "rows_out": r.rows_out, "mode": r.mode, "parse_hash": r.parse_hash, "rounded": r.rounded,
            "suppressed": [{"row": s.row, "column": s.column, "rule": s.rule, "reason": s.reason}
                           for s in r.suppressed],
            "datasets": outcome.record.datasets, "elapsed_ms": outcome.record.elapsed_ms}


