"""Portability as a sovstack plugin: the root commands `sovstack export` and `sovstack import`."""

from __future__ import annotations

import typer

from sovstack.core.plugins import hookimpl
from sovstack.portability import cli


@hookimpl
def sovstack_cli(app: typer.Typer) -> None:
    app.command("export")(cli.export)
    app.command("import")(cli.import_bag)
