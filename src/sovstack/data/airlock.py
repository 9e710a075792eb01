"""The airlock: exact results from sensitive data leave only after a steward checks them.

A member submits an aggregate query on a sensitive dataset with its purpose. It runs at once, in the
same locked-down worker as every sandbox query, and its exact result is held with the output check
computed for the reviewer (``outputcheck``): suppression, differencing against this person's earlier
and pending requests on the same data, and warnings. A steward of the publisher who is not the
requester releases it (the rows with the check's suppression applied, nothing more) or refuses it with a
reason. Until then the requester sees only that it is held. Every step is audited.

What it protects: anything a rule or a careful reader would catch in one result or a pair. What it
does not: a reviewer who releases what they should not, and attacks spread over many releases that
no pair reveals (docs/user-guide/data.md §6).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlglot import exp

from sovstack.core import audit, identity
from sovstack.core.base import rfc3339, utcnow
from sovstack.core.context import Principal
from sovstack.core.db import Database
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused, SovstackError, Unavailable
from sovstack.core.settings import Settings
from sovstack.data import outputcheck, queries, sandbox
from sovstack.data.disclosure import AggregatePlan
from sovstack.data.sandbox import LimitExceeded, Limits
from sovstack.data.service import STEWARDS, current_version
from sovstack.data.tables import AirlockRequest, Dataset

MAX_GROUPS = 10_000  # an output check of part of a table would be no check
CHECKER = Principal.system("airlock")
log = logging.getLogger(__name__)


def submit(session: Session, who: Principal, settings: Settings, sql: str, purpose: str, limits: Limits,
           background: Database | None = None) -> AirlockRequest:
    """Hold ``sql`` for review and record it (committed); run it now, or in a thread on ``background``.

    Run in the background, the reply takes the same time whatever the data holds, so neither an error
    nor a slow branch in one person's row tells the requester anything (a timing oracle).
    """
    try:
        held = hold(session, who, settings, sql, purpose, limits, counted=True, run=background is None)
        session.commit()
    except SovstackError as exc:
        session.rollback()
        audit.record(session, actor=who.actor, action="data.airlock.submit",
                     target=",".join(f"dataset:{d.name}" for d in queries.named_in(session, sql)) or "airlock",
                     outcome="refused" if isinstance(exc, Refused) else "failed", reasons=exc.reasons,
                     detail={"sql": sql, "sql_sha256": _sha(sql), "error": exc.message})
        session.commit()
        if isinstance(exc, Refused):
            exc.audited = True
        raise
    if background is not None:
        threading.Thread(target=complete, args=(background, held.id, limits), name=f"airlock-{held.id}",
                         daemon=True).start()
    return held


def hold(session: Session, who: Principal, settings: Settings, sql: str, purpose: str, limits: Limits,
         counted: bool, run: bool = True) -> AirlockRequest:
    """Check ``sql`` and add it held, uncommitted; with ``run``, run it and add its output check now.

    ``counted``: the submission takes from the person's query limits (committing that at once); the
    demo's seed does not.
    """
    named = queries.named_in(session, sql)
    if not any(d.classification == "sensitive" for d in named):
        raise BadInput("the airlock holds exact results from sensitive datasets; name one (open and restricted "
                       "data answer in the sandbox directly)", field="sql")
    uses = (queries.uses_of if counted else queries.granted)(session, who, settings, named)
    tables = [u.table for u in uses]
    checked = sandbox.check(sql, tables)
    use = next(u for u in uses if u.table.name in checked.tables)
    if checked.plan is None or use.dataset.classification != "sensitive":
        raise BadInput("the airlock holds exact results from sensitive datasets", field="sql")
    if not checked.engine_sql:
        raise sandbox.no_exact_form()
    _check_names(checked.plan, use)
    assert who.user_id is not None
    held = AirlockRequest(user_id=who.user_id, dataset_id=use.dataset.id, grant_id=use.grant, version=use.version,
                          version_sha256=use.sha256, sql=sql, sql_sha256=_sha(sql), parse_hash=checked.parse_hash,
                          purpose=purpose, status="held", columns=[cell.name for cell in checked.plan.cells],
                          checks=_outcome("running", checked.plan))
    session.add(held)
    session.flush()
    audit.record(session, actor=who.actor, action="data.airlock.submit", target=f"dataset:{use.dataset.name}",
                 detail={"airlock": held.id, "sql": sql, "sql_sha256": held.sql_sha256,
                         "parse_hash": held.parse_hash, "version": use.version, "grant": use.grant})
    if run:
        _run(session, held, checked, tables, limits)
    return held


def complete(database: Database, request_id: int, limits: Limits) -> None:
    """Run a held request's query and store its output check, in a session of its own (a thread's work)."""
    try:
        with database.session() as session:
            held = session.get(AirlockRequest, request_id)
            if held is None:
                return
            table = queries.granted_table(database.settings, held.dataset, held.version_sha256)
            _run(session, held, sandbox.check(held.sql, [table]), [table], limits)
            session.commit()
    except (SovstackError, SQLAlchemyError):  # e.g. the database went away: the request stays "running"
        log.exception("airlock request %s could not be checked", request_id)


def _run(session: Session, held: AirlockRequest, checked: sandbox.CheckedQuery, tables: list[sandbox.GrantedTable],
         limits: Limits) -> None:
    assert checked.plan is not None
    try:
        check, exact = _checked_result(session, held, checked, tables, dataclasses.replace(limits, max_rows=MAX_GROUPS))
        held.columns, held.rows, held.checks = check.columns, exact, check.public()
        held.released_rows = check.released_rows(exact)
    except (BadInput, Unavailable) as exc:  # LimitExceeded included
        # Whether it fails can depend on one person's values (a conversion in their row, a time limit
        # reached only for some data): the steward sees it, the requester only that it is held.
        held.checks = _outcome("failed", checked.plan, exc.message)
    audit.record(session, actor=CHECKER.actor, action="data.airlock.check", target=f"dataset:{held.dataset.name}",
                 outcome="failed" if "failed" in held.checks else "ok",
                 detail={"airlock": held.id, "summary": held.checks["summary"], "failed": held.checks.get("failed")})


def _outcome(state: str, plan: AggregatePlan, message: str = "") -> dict[str, Any]:
    """The checks of a request that has no result: still running, or failed."""
    return {state: message or True, "summary": {"cells": 0, "primary": 0, "secondary": 0, "groups_withheld": 0,
                                                "overlaps": 0, "warnings": 0},
            "groups": [], "group_entities": [], "cells": [], "overlaps": [], "warnings": outputcheck.warnings(plan)}


def _check_names(plan: AggregatePlan, use: queries.Use) -> None:
    """Every column the query names exists (a typo is told at once: the same for any data)."""
    version = current_version(use.dataset)
    assert version is not None
    known = {str(column["name"]).lower() for column in version.columns}
    nodes = [*(plan.where.find_all(exp.Column) if plan.where is not None else []),
             *(column for key in plan.keys for column in key.find_all(exp.Column)),
             *(column for cell in plan.cells if cell.arg is not None for column in cell.arg.find_all(exp.Column))]
    missing = sorted({node.name for node in nodes if node.name.lower() not in known})
    if missing:
        raise BadInput(f"{use.dataset.name} has no column {', '.join(missing)}", field="sql")


def _checked_result(session: Session, held: AirlockRequest, checked: sandbox.CheckedQuery,
                    tables: list[sandbox.GrantedTable], limits: Limits) -> tuple[outputcheck.OutputCheck, list[Any]]:
    assert checked.plan is not None
    ran = sandbox.run_exact(checked, tables, limits=limits)
    if ran.truncated:
        raise LimitExceeded(f"the result has more than {MAX_GROUPS} groups: no one can check that by hand",
                            field="sql")
    sizes = [int(row[ran.columns.index("__entities")]) for row in ran.rows]
    earlier = _comparable(session, held, tables, sizes, checked.plan.table.k)
    overlaps: list[outputcheck.Overlap] = []
    if earlier:
        found = sandbox.run_exact(checked, tables, outputcheck.overlap_sql(checked.plan, earlier), limits=limits)
        overlaps = outputcheck.overlaps_of(found.rows)
    return outputcheck.assess(checked.plan, ran.columns, ran.rows, overlaps)


def _comparable(session: Session, held: AirlockRequest, tables: list[sandbox.GrantedTable], sizes: list[int],
                k: int) -> list[tuple[int, Any]]:
    """The person's other released and still-held requests on the same version that could difference
    with this one, as plans to compare with.

    Held ones count too: two requests sent together, each checked before the other was released, would
    otherwise pass as a differencing pair. Two groups whose sizes differ by k or more cannot differ by
    fewer than k people, so a request none of whose groups comes that close in size (known from its
    check) needs no comparison: the costly pass over the data runs only where it can find something.
    """
    found = session.scalars(select(AirlockRequest).where(
        AirlockRequest.user_id == held.user_id, AirlockRequest.dataset_id == held.dataset_id,
        AirlockRequest.version_sha256 == held.version_sha256, AirlockRequest.id != held.id,
        AirlockRequest.status.in_(("held", "released"))).order_by(AirlockRequest.id))
    close = [earlier for earlier in found if "running" in earlier.checks
             or outputcheck.sizes_within(sizes, earlier.checks.get("group_entities", []), k)]
    return [(earlier.id, sandbox.check(earlier.sql, tables).plan) for earlier in close]


def get(session: Session, who: Principal, request_id: int) -> tuple[AirlockRequest, bool]:
    """The request and whether ``who`` reviews it (sees the exact rows); NotFound for anyone else."""
    held = session.get(AirlockRequest, request_id)
    if held is None:
        raise NotFound(f"no airlock request {request_id}", field="request")
    reviews = who.has_role(held.dataset.publisher_id, *STEWARDS) and who.user_id != held.user_id
    if not reviews and who.user_id != held.user_id:
        raise NotFound(f"no airlock request {request_id}", field="request")
    return held, reviews


def decide(session: Session, who: Principal, request_id: int, release: bool, reason: str) -> AirlockRequest:
    """A steward of the publisher, never the requester, releases the checked result or refuses it."""
    held = session.get(AirlockRequest, request_id)
    if held is None:
        raise NotFound(f"no airlock request {request_id}", field="request")
    target = f"dataset:{held.dataset.name}"
    who.require_role(held.dataset.publisher_id, *STEWARDS, action="data.airlock.decide", target=target)
    if who.user_id is not None and who.user_id == held.user_id:
        raise Refused("you cannot review your own airlock request", action="data.airlock.decide", target=target,
                      reasons=["output checking needs a second person: another steward of the publisher"])
    if held.status != "held":
        raise Conflict(f"airlock request {request_id} was already {held.status}", field="request")
    if not release and not reason.strip():
        raise BadInput("say why the result is refused; the requester sees it", field="reason")
    if release and "running" in held.checks:
        raise Conflict("the query is still running: its output check is not ready", field="release")
    if release and "failed" in held.checks:
        raise BadInput("the query failed while running, so there is nothing to release: refuse it (the "
                       "requester is told only your reason)", field="release")
    held.status = "released" if release else "refused"
    held.reviewed_by, held.reason, held.decided_at = who.actor, reason.strip(), utcnow()
    audit.record(session, actor=who.actor, action="data.airlock.decide", target=target,
                 detail={"airlock": held.id, "status": held.status, "reason": held.reason,
                         "requester": held.user_id, "summary": held.checks.get("summary", {})})
    return held


def listing(session: Session, who: Principal, view: str, status: str | None = None, limit: int = 50,
            before: int | None = None) -> list[AirlockRequest]:
    """``mine``: the person's own requests; ``review``: requests on datasets they steward, not their own."""
    q = select(AirlockRequest)
    if view == "mine":
        q = q.where(AirlockRequest.user_id == who.user_id)
    elif view == "review":
        if not who.acts_as_admin:
            orgs = [org for org, roles in who.roles.items() if roles & set(STEWARDS)]
            q = q.join(Dataset).where(Dataset.publisher_id.in_(orgs))
        if who.user_id is not None:
            q = q.where(AirlockRequest.user_id != who.user_id)
    else:
        raise BadInput("view is mine or review", field="view")
    if status is not None:
        q = q.where(AirlockRequest.status == status)
    if before is not None:
        q = q.where(AirlockRequest.id < before)
    return list(session.scalars(q.order_by(AirlockRequest.id.desc()).limit(limit)))


def public(session: Session, held: AirlockRequest, reviews: bool) -> dict[str, Any]:
    """The request as ``reviews`` (a steward: exact rows and the check) or its requester may see it."""
    out: dict[str, Any] = {
        "id": held.id, "dataset": held.dataset.name, "version": held.version, "user_id": held.user_id,
        "requester": identity.get_user(session, held.user_id).email, "sql": held.sql, "sql_sha256": held.sql_sha256,
        "parse_hash": held.parse_hash, "purpose": held.purpose, "status": held.status, "reason": held.reason,
        "reviewed_by": held.reviewed_by, "created_at": rfc3339(held.created_at),
        "decided_at": rfc3339(held.decided_at), "columns": held.columns,
        "summary": held.checks.get("summary", {}),
        "rows": held.released_rows if held.status == "released" else None,
    }
    if reviews:
        out |= {"exact_rows": held.rows, "released_rows": held.released_rows, "checks": held.checks}
    return out


def _sha(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()
