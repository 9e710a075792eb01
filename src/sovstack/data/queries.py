"""Sandbox queries as a member runs them: grants checked at use, the query run locked down, all recorded.

Which tables a query may name: open datasets for every member; restricted and sensitive ones only
under a live grant (not expired, not revoked), re-checked against the policy for the grant's
organisation at every query. Sensitive datasets are always aggregate-only, for everyone. Every query
— answered, refused or failed — is kept in the querier's history, shown to the datasets' stewards,
and audited with its SQL, parse hash, grants, dataset versions, rows out and suppressed cells.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sovstack.core import audit, identity
from sovstack.core.base import rfc3339
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, RateLimited, Refused, SovstackError
from sovstack.core.settings import Settings
from sovstack.data import access, engine, ingest, private, quotas, sandbox
from sovstack.data.ingest import object_path
from sovstack.data.sandbox import GrantedTable, Limits, QueryResult
from sovstack.data.service import STEWARDS, current_version, get_visible
from sovstack.data.tables import AccessGrant, Dataset, PrivacyLedger, PrivateAnswer, QueryDataset, SandboxQuery


@dataclass
class Use:
    """One dataset a query names, with the version and grant it would be read under."""

    dataset: Dataset
    table: GrantedTable
    version: int
    grant: int | None
    sha256: str = ""
    rows: int = 0
    held: AccessGrant | None = None  # the grant itself: its privacy budget and daily cap


@dataclass
class Outcome:
    result: QueryResult | None
    record: SandboxQuery
    uses: list[Use] = field(default_factory=list)
    privacy: dict[str, Any] | None = None  # a differentially private answer: spend, budget, accuracy


def named_in(session: Session, sql: str) -> list[Dataset]:
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
    table = granted_table(settings, dataset, version.sha256)
    return Use(dataset, table, version.number, grant.id if grant else None, version.sha256, version.rows, grant)


def granted_table(settings: Settings, dataset: Dataset, sha256: str) -> GrantedTable:
    """A version of the dataset as the sandbox reads it: whole rows, or aggregates only if sensitive."""
    mode: Literal["full", "aggregate"] = "aggregate" if dataset.classification == "sensitive" else "full"
    objects, entity = settings.home / "objects", dataset.entity_column or None
    most = ingest.max_rows_per_entity(objects, sha256, entity) if mode == "aggregate" and entity else None
    return GrantedTable(dataset.name, object_path(objects, sha256), mode, entity_column=entity,
                        k=dataset.k_threshold, max_rows_per_entity=most or None)


def uses_of(session: Session, who: Principal, settings: Settings, datasets: list[Dataset]) -> list[Use]:
    """The datasets as granted tables, the query counted against the person's limits first (committed)."""
    if who.user_id is None:
        raise BadInput("sandbox queries are run by members (a user's key or console session)", field="user")
    quotas.take_minute(session, who.user_id, settings)
    uses = granted(session, who, settings, datasets)
    for use in uses:
        if use.dataset.classification != "open":
            quotas.take_daily(session, who.user_id, settings, use.dataset, use.held)
    return uses


def granted(session: Session, who: Principal, settings: Settings, datasets: list[Dataset]) -> list[Use]:
    """The datasets as granted tables, or Refused (not counted against any limit: for the demo's seed)."""
    if who.user_id is None:
        raise BadInput("sandbox queries are run by members (a user's key or console session)", field="user")
    return [_use(session, who, settings, dataset) for dataset in datasets]


def run(session: Session, who: Principal, settings: Settings, sql: str, limits: Limits,
        epsilon: float = private.DEFAULT_EPSILON, delta: float | None = None) -> Outcome:
    """Run ``sql`` for ``who`` and commit its history row and audit event, whatever happened.

    This is its own unit of work: a refused or failing query is recorded and committed first, then its
    error is raised for the caller to answer (already audited).
    """
    started = time.perf_counter()
    record = SandboxQuery(user_id=who.user_id or 0, sql=sql, outcome="failed")
    uses: list[Use] = []
    named = named_in(session, sql)
    result: QueryResult | None = None
    privacy: dict[str, Any] | None = None
    error: SovstackError | None = None
    try:
        uses = uses_of(session, who, settings, named)
        checked = sandbox.check(sql, [u.table for u in uses])
        if checked.plan is None:
            result = sandbox.run_checked(checked, [u.table for u in uses], limits)
        else:
            result, privacy = _private(session, who, checked, next(u for u in uses if u.table.name in checked.tables),
                                       epsilon, delta, limits)
    except SovstackError as exc:
        error = exc
    resolved = {u.dataset.name for u in uses}
    record.datasets = [{"name": u.dataset.name, "version": u.version, "grant": u.grant} for u in uses] + [
        {"name": d.name, "version": None, "grant": None} for d in named if d.name not in resolved]
    record.elapsed_ms = int((time.perf_counter() - started) * 1000)
    record.sql_sha256 = hashlib.sha256(sql.encode()).hexdigest()
    if privacy is not None:
        record.epsilon, record.cached = privacy["spent"], privacy["cached"]
    if result is not None:
        record.outcome, record.parse_hash = "ok", result.parse_hash
        record.rows_out, record.cells_suppressed = result.rows_out, len(result.suppressed)
    else:
        record.outcome = "refused" if isinstance(error, Refused | RateLimited) else "failed"
        record.message = error.message if error else ""
    if record.user_id:
        session.add(record)
        session.flush()
        session.add_all(QueryDataset(query_id=record.id, dataset_id=d.id) for d in named)
    audit.record(session, actor=who.actor, action="data.sandbox.query",
                 target=",".join(f"dataset:{d.name}" for d in named) or "sandbox",
                 outcome="ok" if result is not None else record.outcome,
                 reasons=error.reasons if error else [],
                 detail={"query": record.id, "sql": sql, "sql_sha256": record.sql_sha256,
                         "parse_hash": record.parse_hash, "datasets": record.datasets, "rows_out": record.rows_out,
                         "cells_suppressed": record.cells_suppressed, "epsilon": record.epsilon,
                         "cached": record.cached, "error": record.message})
    session.commit()
    if error is not None:
        if isinstance(error, Refused):
            error.audited = True
        raise error
    return Outcome(result, record, uses, privacy)


def budget(session: Session, user_id: int, dataset: Dataset, grant: AccessGrant | None = None) -> dict[str, float]:
    """What one person has spent of their privacy budget on a dataset, and what remains under ``grant``.

    The spend is one figure across all the person's grants and keys; each grant's budget (set by a steward,
    at most the dataset's cap) is how far that spend may go while using it.
    """
    ledger = session.execute(select(PrivacyLedger.epsilon_spent, PrivacyLedger.delta_spent).where(
        PrivacyLedger.user_id == user_id, PrivacyLedger.dataset_id == dataset.id)).first()
    spent, delta_spent = (ledger[0], ledger[1]) if ledger is not None else (0.0, 0.0)
    limit = epsilon_limit(dataset, grant)
    return {"epsilon_cap": dataset.dp_epsilon_cap, "epsilon_limit": limit, "epsilon_spent": round(spent, 12),
            "epsilon_remaining": round(max(0.0, limit - spent), 12), "delta_cap": dataset.dp_delta_cap,
            "delta_spent": delta_spent, "delta_remaining": max(0.0, dataset.dp_delta_cap - delta_spent)}


def epsilon_limit(dataset: Dataset, grant: AccessGrant | None) -> float:
    if grant is None or grant.epsilon_budget is None:
        return dataset.dp_epsilon_cap
    return min(grant.epsilon_budget, dataset.dp_epsilon_cap)


def my_budget(session: Session, who: Principal, name: str) -> dict[str, Any]:
    dataset = get_visible(session, who, name)
    if who.user_id is None:
        raise BadInput("privacy budgets belong to members", field="user")
    grant = access.live_grant(session, who.user_id, dataset.id, "download", "sandbox")
    return {"dataset": name, "grant": grant.id if grant else None, **budget(session, who.user_id, dataset, grant)}


def _private(session: Session, who: Principal, checked: sandbox.CheckedQuery, use: Use, epsilon: float,
             delta: float | None, limits: Limits) -> tuple[QueryResult, dict[str, Any]]:
    """A differentially private answer: from the person's earlier releases if asked before, else charged first."""
    assert checked.plan is not None and who.user_id is not None
    dataset, user_id = use.dataset, who.user_id
    if not private.needs_delta(checked.plan, dataset.dp_keys):
        delta = 0.0
    elif delta is None:
        delta = dataset.dp_delta_cap / 10
    before = budget(session, user_id, dataset, use.held)
    earlier = session.scalar(select(PrivateAnswer).where(
        PrivateAnswer.user_id == user_id, PrivateAnswer.dataset_id == dataset.id,
        PrivateAnswer.version_sha256 == use.sha256, PrivateAnswer.parse_hash == checked.parse_hash,
        PrivateAnswer.epsilon == epsilon, PrivateAnswer.delta == delta))
    if earlier is not None:
        answer, spent, cached = dict(earlier.answer), 0.0, True
    else:
        request = private.spec(checked.plan, bounds=dataset.dp_bounds, keys=dataset.dp_keys,
                               max_rows_per_entity=dataset.dp_max_rows_per_entity, max_length=use.rows,
                               epsilon=epsilon, delta=delta)
        _charge(session, user_id, dataset, epsilon, delta, before)
        answer = engine.execute_private(request, use.table.path, limits)
        answer = {"columns": answer["columns"], "rows": answer["rows"][: limits.max_rows],
                  "accuracy": answer["accuracy"], "threshold": answer.get("threshold"),
                  "truncated": len(answer["rows"]) > limits.max_rows}
        session.add(PrivateAnswer(user_id=user_id, dataset_id=dataset.id, version_sha256=use.sha256,
                                  parse_hash=checked.parse_hash, epsilon=epsilon, delta=delta, answer=answer))
        spent, cached = epsilon, False
    result = QueryResult(answer["columns"], answer["rows"], answer["truncated"], len(answer["rows"]), [],
                         checked.parse_hash, "private")
    after = budget(session, user_id, dataset, use.held) if not cached else before
    return result, {"mechanism": "laplace (OpenDP)", "epsilon": epsilon, "spent": spent, "cached": cached,
                    "delta": delta, "delta_spent": delta if not cached else 0.0,
                    "threshold": answer.get("threshold"), "accuracy": answer["accuracy"],
                    "confidence": 1 - private.ALPHA, "budget_before": before, "budget_after": after}


def _charge(session: Session, user_id: int, dataset: Dataset, epsilon: float, delta: float,
            before: dict[str, float]) -> None:
    """Spend ``epsilon`` (and ``delta``) of the person's budget in its own committed transaction, or Refused
    if either would overrun its cap: one guarded UPDATE, so concurrent queries can never overspend together."""
    exists = select(PrivacyLedger.id).where(PrivacyLedger.user_id == user_id, PrivacyLedger.dataset_id == dataset.id)
    if session.scalar(exists) is None:
        try:
            with session.begin_nested():
                session.add(PrivacyLedger(user_id=user_id, dataset_id=dataset.id, epsilon_spent=0.0, answers=0,
                                          delta_spent=0.0))
        except IntegrityError:
            pass  # another query made it first
    charged = session.execute(
        update(PrivacyLedger)
        .where(PrivacyLedger.user_id == user_id, PrivacyLedger.dataset_id == dataset.id,
               PrivacyLedger.epsilon_spent + epsilon <= before["epsilon_limit"] + 1e-9,
               PrivacyLedger.delta_spent + delta <= before["delta_cap"] * (1 + 1e-9))
        .values(epsilon_spent=PrivacyLedger.epsilon_spent + epsilon, delta_spent=PrivacyLedger.delta_spent + delta,
                answers=PrivacyLedger.answers + 1)
        .execution_options(synchronize_session=False))
    if charged.rowcount != 1:  # type: ignore[attr-defined]
        raise Refused(f"your privacy budget on {dataset.name} cannot pay for this answer: ε {epsilon:g} asked, "
                      f"{before['epsilon_remaining']:g} of {before['epsilon_limit']:g} left"
                      + (f"; δ {delta:g} asked, {before['delta_remaining']:g} of {before['delta_cap']:g} left"
                         if delta else ""),
                      action="data.sandbox.query", target=f"dataset:{dataset.name}",
                      reasons=["the budget is per person and dataset, across every grant and key; ask with a "
                               "smaller epsilon, repeat an earlier question (free), or ask a steward about an "
                               "exact release"])
    session.commit()  # the spend stands even if the query then fails: a failure must not be a free question


def history(session: Session, who: Principal, limit: int = 50) -> list[SandboxQuery]:
    """The principal's own queries, newest first."""
    return list(session.scalars(select(SandboxQuery).where(SandboxQuery.user_id == who.user_id)
                                .order_by(SandboxQuery.id.desc()).limit(limit)))


def on_dataset(session: Session, who: Principal, name: str, limit: int = 100,
               before: int | None = None) -> list[SandboxQuery]:
    """The queries that named the dataset, newest first, a page at a time (``before``: a query id): for its
    stewards. Read through the dataset's own index, so no volume of other queries hides any of them."""
    dataset = get_visible(session, who, name)
    who.require_role(dataset.publisher_id, *STEWARDS, action="data.sandbox.history", target=f"dataset:{name}")
    q = (select(SandboxQuery).join(QueryDataset, QueryDataset.query_id == SandboxQuery.id)
         .where(QueryDataset.dataset_id == dataset.id))
    if before is not None:
        q = q.where(SandboxQuery.id < before)
    return list(session.scalars(q.order_by(SandboxQuery.id.desc()).limit(limit)))


def public(q: SandboxQuery) -> dict[str, Any]:
    return {"id": q.id, "user_id": q.user_id, "sql": q.sql, "sql_sha256": q.sql_sha256, "parse_hash": q.parse_hash,
            "epsilon": q.epsilon, "cached": q.cached, "datasets": q.datasets,
            "outcome": q.outcome, "message": q.message, "rows_out": q.rows_out,
            "cells_suppressed": q.cells_suppressed, "elapsed_ms": q.elapsed_ms, "at": rfc3339(q.at)}


def result_public(outcome: Outcome) -> dict[str, Any]:
    r = outcome.result
    assert r is not None
    return {"query": outcome.record.id, "columns": r.columns, "rows": r.rows, "truncated": r.truncated,
            "rows_out": r.rows_out, "mode": r.mode, "parse_hash": r.parse_hash, "rounded": r.rounded,
            "suppressed": [{"row": s.row, "column": s.column, "rule": s.rule, "reason": s.reason}
                           for s in r.suppressed],
            "datasets": outcome.record.datasets, "elapsed_ms": outcome.record.elapsed_ms,
            "privacy": outcome.privacy}


