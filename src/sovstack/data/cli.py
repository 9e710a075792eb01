"""`sovstack data …`: the catalogue, versions, access requests and grants, as the local operator."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import typer

from sovstack.core import identity
from sovstack.core.cli.common import OPERATOR, JsonOpt, acting_as, change, emit, emit_one, ref, say, session_of, state
from sovstack.data import access, airlock, ingest, queries, search, service
from sovstack.data.api import grant_public, request_public
from sovstack.data.sandbox import Limits
from sovstack.data.schemas import DatasetCreate, RequestDecision

data_app = typer.Typer(help="The data commons: datasets, versions, access requests, grants.", no_args_is_help=True)

LIST_COLUMNS = ["name", "title", "publisher", "classification", "licence", "current_version", "rows"]


@data_app.command("list")
def list_cmd(ctx: typer.Context, q: str = typer.Argument("", help="Words to search for."),
             classification: str | None = None, publisher: str | None = None, language: str | None = None,
             licence: str | None = None, limit: int = typer.Option(50, min=1, max=1000),
             as_json: bool = JsonOpt) -> None:
    """Search the catalogue (every word, as a prefix), newest first when no words are given."""
    with session_of(ctx) as s:
        found = search.find(s, q, search.Filters(publisher, classification, language, licence), anonymous=False,
                            limit=limit)
        rows = [service.public(d) for d in found.datasets]
    emit(rows, LIST_COLUMNS, as_json, title=f"{found.total} datasets")


@data_app.command("create")
def create(ctx: typer.Context, name: str, title: str = typer.Option(...), publisher: str = typer.Option(...),
           licence: str = typer.Option(..., help="SPDX id, e.g. CC-BY-4.0."),
           classification: str = typer.Option(..., help="open|restricted|sensitive"),
           storage: str = typer.Option(..., help="ISO 3166-1 alpha-2 code of where the files are stored."),
           description: str = "", language: list[str] = typer.Option([], help="BCP-47 tag; repeat."),
           keyword: list[str] = typer.Option([], help="Repeat for several."), spatial: str = "",
           temporal_start: date | None = typer.Option(None, help="First day the data covers (YYYY-MM-DD)."),
           temporal_end: date | None = typer.Option(None, help="Last day the data covers (YYYY-MM-DD)."),
           provenance: str = "",
           entity_column: str = "", k: int = typer.Option(10, min=2),
           epsilon_cap: float = typer.Option(1.0, help="Sensitive: each person's lifetime privacy budget (ε)."),
           delta_cap: float = typer.Option(0.0, min=0, max=1e-4, help="Sensitive: each person's total δ for "
                                                                      "GROUP BY keys not declared public (0: none)."),
           max_rows_per_entity: int = typer.Option(1, min=1, help="Sensitive: the most rows one entity may have."),
           bound: list[str] = typer.Option([], help="Sensitive: COLUMN:LOW:HIGH clamping bounds; repeat."),
           public_keys: list[str] = typer.Option([], "--keys", help="Sensitive: COLUMN=V1,V2,… public GROUP BY "
                                                                    "values; repeat.")) -> None:
    """Add a dataset to the catalogue (then `sovstack data publish` its file)."""
    with change(ctx) as s:
        org = identity.get_organisation(s, ref(publisher))
        data = DatasetCreate(
            name=name, title=title, publisher_id=org.id, licence=licence, classification=classification,
            storage_jurisdiction=storage, description=description, languages=language, keywords=keyword,
            spatial=spatial, temporal_start=temporal_start, temporal_end=temporal_end, provenance=provenance,
            entity_column=entity_column, k_threshold=k, dp_epsilon_cap=epsilon_cap, dp_delta_cap=delta_cap,
            dp_max_rows_per_entity=max_rows_per_entity, dp_bounds=dict(map(_bound, bound)),
            dp_keys=dict(map(_keys, public_keys)))
        service.create_dataset(s, OPERATOR, state(ctx).settings, data)
    say(f"dataset {name} created ({classification}, stored in {storage})")


def _bound(text: str) -> tuple[str, tuple[float, float]]:
    column, _, rest = text.partition(":")
    low, _, high = rest.partition(":")
    try:
        return column, (float(low), float(high))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: write COLUMN:LOW:HIGH, e.g. income:0:500000",
                                 param_hint="--bound") from None


def _keys(text: str) -> tuple[str, list[str | int | float | bool]]:
    column, sep, values = text.partition("=")
    if not sep or not column or not values:
        raise typer.BadParameter(f"{text!r}: write COLUMN=V1,V2,…", param_hint="--keys")
    return column, [value.strip() for value in values.split(",")]


@data_app.command("show")
def show(ctx: typer.Context, name: str, as_json: bool = JsonOpt) -> None:
    """A dataset's metadata and the schema of its current version."""
    with session_of(ctx) as s:
        emit_one(service.public(service.get_dataset(s, name)), as_json)


@data_app.command("publish")
def publish(ctx: typer.Context, name: str, file: Path = typer.Argument(..., exists=True, dir_okay=False),
            fmt: str | None = typer.Option(None, "--format", help="csv|parquet|jsonl (default: from the suffix)"),
            note: str = "",
            delimiter: str | None = typer.Option(None, help="CSV: the field delimiter (default: whichever of , ; TAB "
                                                            "| the header line holds most)."),
            encoding: str = typer.Option("utf-8", help="CSV: utf-8 or latin-1."),
            allow_ragged_rows: bool = typer.Option(False, help="CSV: publish rows whose number of fields differs "
                                                               "from the header's (as text; the note says so)."),
            allow_schema_change: bool = False) -> None:
    """Publish a file as the dataset's new current version (converted to Parquet, content-addressed)."""
    with change(ctx) as s:
        csv = ingest.CsvOptions(delimiter, encoding, allow_ragged_rows)
        version = service.publish_version(s, OPERATOR, state(ctx).settings, name, file,
                                          ingest.format_of(file.name, fmt), note=note, csv=csv,
                                          allow_schema_change=allow_schema_change)
        say(f"{name} version {version.number}: {version.rows} rows, sha256 {version.sha256[:16]}…"
            + (f" — {version.note}" if version.note != note else ""))


@data_app.command("versions")
def versions(ctx: typer.Context, name: str, as_json: bool = JsonOpt) -> None:
    """Every version of a dataset, oldest first."""
    with session_of(ctx) as s:
        rows = [service.version_public(v) for v in service.versions(s, OPERATOR, name)]
    emit(rows, ["number", "rows", "source_format", "parquet_bytes", "sha256", "created_by", "created_at"], as_json)


@data_app.command("describe")
def describe(ctx: typer.Context, name: str, column: str, description: str) -> None:
    """Describe a column (the description carries over to later versions)."""
    with change(ctx) as s:
        service.describe_column(s, OPERATOR, name, column, description)
    say(f"{name}.{column} described")


@data_app.command("retype")
def retype(ctx: typer.Context, name: str, column: str, type_: str = typer.Argument(..., metavar="TYPE")) -> None:
    """Correct a column's inferred type (a new version; refused if any value does not convert)."""
    with change(ctx) as s:
        version = service.retype_column(s, OPERATOR, state(ctx).settings, name, column, type_)
        say(f"{name} version {version.number}: {version.note}")


@data_app.command("download")
def download(ctx: typer.Context, name: str, out: Path = typer.Option(..., dir_okay=False),
             version: int | None = typer.Option(None, min=1)) -> None:
    """Copy a version's Parquet file out (audited)."""
    with change(ctx) as s:
        path, _, number = access.download(s, OPERATOR, state(ctx).settings, name, version)
        shutil.copyfile(path, out)
    say(f"{name} version {number} written to {out}")


@data_app.command("inbox")
def inbox(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Pending access requests, oldest first; overdue ones flagged."""
    with session_of(ctx) as s:
        rows = [request_public(r, identity.get_user(s, r.user_id).email, late)
                for r, late in access.inbox(s, OPERATOR, state(ctx).settings)]
    emit(rows, ["id", "dataset", "requester", "days", "purpose", "created_at", "overdue"], as_json)


@data_app.command("decide")
def decide(ctx: typer.Context, request_id: int,
           approve: bool = typer.Option(..., "--approve/--reject"), reason: str = "",
           days: int | None = typer.Option(None, min=1, max=730),
           epsilon: float | None = typer.Option(None, help="Sensitive data: the grant's privacy budget (ε), at "
                                                           "most the dataset's cap."),
           daily_queries: int | None = typer.Option(None, min=1, help="Sandbox queries a day under the grant."),
           ) -> None:
    """Approve (a grant, checked against the policy now) or reject (with a reason the requester sees)."""
    with change(ctx) as s:
        req, grant = access.decide(s, OPERATOR, state(ctx).settings, request_id,
                                   RequestDecision(approve=approve, reason=reason, days=days, epsilon=epsilon,
                                                   daily_queries=daily_queries))
        done = f"grant {grant.id} ({grant.mode}) until {grant.expires_at:%Y-%m-%d}" if grant else "rejected"
    say(f"request {req.id}: {done}")


@data_app.command("grants")
def grants(ctx: typer.Context, name: str, as_json: bool = JsonOpt) -> None:
    """Every grant on a dataset."""
    with session_of(ctx) as s:
        rows = [grant_public(g) for g in access.grants_of(s, OPERATOR, name)]
    emit(rows, ["id", "user_id", "mode", "expires_at", "revoked_at", "live"], as_json)


@data_app.command("revoke")
def revoke(ctx: typer.Context, grant_id: int, reason: str = typer.Option(...)) -> None:
    """Revoke a grant at once (every later use is refused)."""
    with change(ctx) as s:
        access.revoke(s, OPERATOR, grant_id, reason)
    say(f"grant {grant_id} revoked")


@data_app.command("query")
def query(ctx: typer.Context, sql: str, as_user: str = typer.Option(..., "--as", help="Run as this member "
          "(email): with their grants only, audited as run from the CLI."),
          max_rows: int = typer.Option(100, min=1, max=10_000),
          epsilon: float = typer.Option(0.1, min=0.0001, max=10, help="Sensitive data: privacy budget to spend."),
          delta: float | None = typer.Option(None, min=0, max=1e-4, help="Sensitive data grouped by keys not "
                                                                         "declared public: δ to spend."),
          as_json: bool = JsonOpt) -> None:
    """Run a sandbox query with a member's grants (sensitive data: differentially private, from their budget)."""
    settings = state(ctx).settings
    with session_of(ctx) as s:
        who = acting_as(s, as_user, admin=False)
        outcome = queries.run(s, who, settings, sql, Limits(max_rows=max_rows, seconds=settings.sandbox_seconds),
                              epsilon, delta)
        result = queries.result_public(outcome)
    if as_json:
        emit_one(result, True)
        return
    emit([dict(zip(result["columns"], ["(suppressed)" if v is None else v for v in row], strict=True))
          for row in result["rows"]], result["columns"], False,
         title=f"{result['rows_out']} rows{' (cut)' if result['truncated'] else ''}, mode {result['mode']}")
    for cell in result["suppressed"]:
        say(f"suppressed row {cell['row'] + 1} {cell['column']}: {cell['reason']}")
    if result["privacy"]:
        privacy = result["privacy"]
        error = ", ".join(f"{name} ±{value:,.1f}" for name, value in privacy["accuracy"].items() if value is not None)
        repeated = ", repeated: nothing spent" if privacy["cached"] else ""
        say(f"differentially private (ε {privacy['epsilon']:g}{repeated}); 95% error {error or '-'}; "
            f"budget left {privacy['budget_after']['epsilon_remaining']:g} of "
            f"{privacy['budget_after']['epsilon_limit']:g}")


@data_app.command("budget")
def budget_cmd(ctx: typer.Context, name: str, as_user: str = typer.Option(..., "--as", help="The member (email)."),
               as_json: bool = JsonOpt) -> None:
    """A member's privacy budget on a sensitive dataset: cap, spent, remaining."""
    with session_of(ctx) as s:
        emit_one(queries.my_budget(s, acting_as(s, as_user, admin=False), name), as_json)


airlock_app = typer.Typer(help="Exact results from sensitive data, held for a steward's output check.",
                          no_args_is_help=True)
data_app.add_typer(airlock_app, name="airlock")
AIRLOCK_COLUMNS = ["id", "dataset", "requester", "status", "summary", "sql", "created_at"]


@airlock_app.command("submit")
def airlock_submit(ctx: typer.Context, sql: str, purpose: str = typer.Option(..., help="Why exact figures are "
                                                                                      "needed (the steward reads it)."),
                   as_user: str = typer.Option(..., "--as", help="Submit as this member (email), with their grants."),
                   as_json: bool = JsonOpt) -> None:
    """Run an aggregate query on sensitive data exactly and hold the result for a steward's output check."""
    settings = state(ctx).settings
    with session_of(ctx) as s:
        held = airlock.submit(s, acting_as(s, as_user, admin=False), settings, sql, purpose,
                              Limits(seconds=settings.sandbox_seconds))
        out = airlock.public(s, held, reviews=False)
    if as_json:
        emit_one(out, True)
        return
    say(f"airlock request {out['id']}: held for a steward of {out['dataset']}'s publisher; the rows leave once "
        "released")


@airlock_app.command("list")
def airlock_list(ctx: typer.Context, as_user: str | None = typer.Option(None, "--as", help="A member's own "
                                                                                          "requests (email)."),
                 status: str | None = typer.Option(None, help="held|released|refused"),
                 limit: int = typer.Option(50, min=1, max=500), as_json: bool = JsonOpt) -> None:
    """Requests waiting for review (as the operator), or one member's own (--as)."""
    with session_of(ctx) as s:
        who = acting_as(s, as_user, admin=False) if as_user else OPERATOR
        found = airlock.listing(s, who, "mine" if as_user else "review", status, limit)
        rows = [airlock.public(s, held, reviews=False) for held in found]
    emit(rows, AIRLOCK_COLUMNS, as_json, title=f"{len(rows)} airlock requests")


@airlock_app.command("show")
def airlock_show(ctx: typer.Context, request_id: int, as_json: bool = JsonOpt) -> None:
    """One request as its reviewer sees it: the exact rows, what would be released, and the output check."""
    with session_of(ctx) as s:
        held, _ = airlock.get(s, OPERATOR, request_id)
        out = airlock.public(s, held, reviews=True)
    if as_json:
        emit_one(out, True)
        return
    say(f"request {out['id']} on {out['dataset']} v{out['version']} by {out['requester']}: {out['status']}")
    say(f"purpose: {out['purpose']}")
    say(f"sql: {out['sql']}")
    emit([dict(zip(out["columns"], row, strict=True)) for row in out["exact_rows"]], out["columns"], False,
         title="exact result (held)")
    checks = out["checks"]
    if "failed" in checks:
        say(f"the query failed while running: {checks['failed']} (nothing to release: refuse it)")
    say("check: " + ", ".join(f"{key} {value}" for key, value in checks["summary"].items()))
    withheld = set()
    for cell in checks["cells"]:
        if cell["rule"] == "k-group" and cell["row"] not in withheld:
            withheld.add(cell["row"])
            say(f"  row {cell['row'] + 1} ({checks['groups'][cell['row']]}): {cell['reason']}")
        elif cell["status"] != "ok" and cell["rule"] != "k-group":
            say(f"  row {cell['row'] + 1} {cell['column']}: {cell['status']} ({cell['rule']}) {cell['reason']}")
    for overlap in checks["overlaps"]:
        say(f"  differencing: {overlap['group']} and request {overlap['release']}'s {overlap['their_group']} "
            f"differ by {overlap['apart']} entities")
    for warning in checks["warnings"]:
        say(f"  warning: {warning}")


@airlock_app.command("release")
def airlock_release(ctx: typer.Context, request_id: int, reason: str = "") -> None:
    """Release a held result, with the check's suppression applied."""
    with change(ctx) as s:
        airlock.decide(s, OPERATOR, request_id, True, reason)
    say(f"airlock request {request_id} released")


@airlock_app.command("refuse")
def airlock_refuse(ctx: typer.Context, request_id: int, reason: str = typer.Option(..., help="Shown to the "
                                                                                            "requester.")) -> None:
    """Refuse a held result, saying why."""
    with change(ctx) as s:
        airlock.decide(s, OPERATOR, request_id, False, reason)
    say(f"airlock request {request_id} refused")
