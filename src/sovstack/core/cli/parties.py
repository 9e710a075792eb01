"""`sovstack party …` and `sovstack jurisdiction …`: the registry of suppliers and the shipped law data."""

from __future__ import annotations

import typer

from sovstack.core import parties
from sovstack.core.cli.common import OPERATOR, JsonOpt, change, emit, emit_one, ref, session_of, state
from sovstack.core.jurisdictions import catalogue
from sovstack.core.schemas import PartyCreate, PartyUpdate

party_app = typer.Typer(help="Parties: providers, operators, model developers, chip vendors…", no_args_is_help=True)
jurisdiction_app = typer.Typer(help="Countries, blocs, extraterritorial laws, export regimes (shipped data).",
                               no_args_is_help=True)

PARTY_COLUMNS = ["id", "name", "kinds", "jurisdiction", "ultimate_parent", "parent_jurisdiction",
                 "extraterritorial_laws"]


@party_app.command("list")
def party_list(ctx: typer.Context, kind: str | None = None, jurisdiction: str | None = None,
               as_json: bool = JsonOpt) -> None:
    """List parties, optionally of one kind or touching one jurisdiction (own or parent's)."""
    home = state(ctx).settings.home_jurisdiction
    with session_of(ctx) as s:
        rows = [parties.public(p, home) for p in parties.list_parties(s, kind=kind, jurisdiction=jurisdiction)]
    emit(rows, PARTY_COLUMNS, as_json)


@party_app.command("create")
def party_create(ctx: typer.Context, name: str,
                 kind: list[str] = typer.Option(..., "--kind", help="Repeat: compute_provider, model_developer…"),
                 jurisdiction: str = typer.Option(...),
                 parent: str = typer.Option("", help="Ultimate parent's name."),
                 parent_jurisdiction: str | None = None, website: str = "", notes: str = "",
                 as_json: bool = JsonOpt) -> None:
    """Register a party with its jurisdiction and its ultimate parent's."""
    data = PartyCreate(name=name, kinds=kind, jurisdiction=jurisdiction, ultimate_parent=parent,
                       parent_jurisdiction=parent_jurisdiction, website=website, notes=notes)
    with change(ctx) as s:
        party = parties.create_party(s, OPERATOR, data)
    emit_one(parties.public(party, state(ctx).settings.home_jurisdiction), as_json)


@party_app.command("update")
def party_update(ctx: typer.Context, party: str, jurisdiction: str | None = None,
                 parent: str | None = None, parent_jurisdiction: str | None = None,
                 notes: str | None = None, as_json: bool = JsonOpt) -> None:
    """Change a party's jurisdiction facts (by id or name)."""
    data = PartyUpdate(jurisdiction=jurisdiction, ultimate_parent=parent, parent_jurisdiction=parent_jurisdiction,
                       notes=notes)
    with change(ctx) as s:
        updated = parties.update_party(s, OPERATOR, ref(party), data)
    emit_one(parties.public(updated, state(ctx).settings.home_jurisdiction), as_json)


@party_app.command("show")
def party_show(ctx: typer.Context, party: str, as_json: bool = JsonOpt) -> None:
    """One party, with the foreign laws that reach it."""
    with session_of(ctx) as s:
        found = parties.get_party(s, ref(party))
        emit_one(parties.public(found, state(ctx).settings.home_jurisdiction), as_json)


@jurisdiction_app.command("list")
def jurisdiction_list(as_json: bool = JsonOpt) -> None:
    """ISO 3166-1 countries."""
    emit([c.__dict__ for c in catalogue().countries.values()], ["code", "name"], as_json)


@jurisdiction_app.command("blocs")
def jurisdiction_blocs(as_json: bool = JsonOpt) -> None:
    """Blocs (EU, EEA, …) and their members."""
    emit([{**b.__dict__, "members": list(b.members)} for b in catalogue().blocs.values()],
         ["code", "name", "members", "source"], as_json)


@jurisdiction_app.command("laws")
def jurisdiction_laws(as_json: bool = JsonOpt) -> None:
    """Laws with extraterritorial reach, with their sources."""
    emit([law.__dict__ for law in catalogue().laws], ["id", "jurisdiction", "name", "citation", "source"], as_json)


@jurisdiction_app.command("regimes")
def jurisdiction_regimes(as_json: bool = JsonOpt) -> None:
    """Export-control regimes, with their sources."""
    emit([r.__dict__ for r in catalogue().regimes], ["id", "jurisdiction", "name", "citation", "source"], as_json)


@jurisdiction_app.command("show")
def jurisdiction_show(code: str, as_json: bool = JsonOpt) -> None:
    """One country: its blocs, and the laws and regimes of that jurisdiction."""
    cat = catalogue()
    country = cat.country(code)
    emit_one({"code": country.code, "name": country.name,
              "blocs": [b.code for b in cat.blocs.values() if country.code in b.members],
              "extraterritorial_laws": [f"{law.name} ({law.citation})" for law in cat.laws_of(country.code)],
              "export_control_regimes": [r.name for r in cat.regimes if r.jurisdiction == country.code]}, as_json)
