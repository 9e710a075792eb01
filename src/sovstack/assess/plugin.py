"""The sovereignty assessor as a sovstack plugin: for now, its CLI (`sovstack assess …`)."""

from __future__ import annotations

import typer

from sovstack.assess.cli import assess_app
from sovstack.core.plugins import hookimpl


@hookimpl
def sovstack_cli(app: typer.Typer) -> None:
    app.add_typer(assess_app, name="assess")
