"""The root command: `sovstack init|serve|demo|config|db` and every module's sub-app."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pluggy
import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import OperationalError
from typer.exceptions import TyperException

from sovstack import __version__, server
from sovstack.core import demo as core_demo
from sovstack.core.cli.audit import audit_app
from sovstack.core.cli.common import CliState, JsonOpt, emit, say, state
from sovstack.core.cli.identity import invitation_app, key_app, org_app, user_app
from sovstack.core.cli.parties import jurisdiction_app, party_app
from sovstack.core.cli.policy import policy_app
from sovstack.core.context import CORE_SCOPES
from sovstack.core.errors import SovstackError
from sovstack.core.plugins import flatten, plugin_manager
from sovstack.core.settings import describe, export_for_workers

config_app = typer.Typer(help="Effective settings.", no_args_is_help=True)
HostOpt = typer.Option(None, "--host", help="Address to listen on (default: SOVSTACK_HOST).")
PortOpt = typer.Option(None, "--port", min=1, max=65535, help="Port to listen on (default: SOVSTACK_PORT).")
WorkersOpt = typer.Option(None, "--workers", min=1, max=64, help="Worker processes (default: SOVSTACK_WORKERS).")
db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)


def _root(ctx: typer.Context,
          home: Path | None = typer.Option(None, "--home", help="Deployment folder (SOVSTACK_HOME)."),
          database_url: str | None = typer.Option(None, "--database-url",
                                                     help="Database URL (SOVSTACK_DATABASE_URL)."),
          version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    """sovstack: a sovereign AI commons you run on machines you control."""
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    overrides: dict[str, Any] = {}
    if home is not None:
        overrides["home"] = home
    if database_url is not None:
        overrides["database_url"] = database_url
    pm: pluggy.PluginManager = ctx.obj
    ctx.obj = CliState(overrides=overrides, plugins=pm,
                       scopes=tuple(dict.fromkeys([*CORE_SCOPES, *flatten(pm.hook.sovstack_scopes())])))


def _init(st: CliState) -> None:
    st.settings.home.mkdir(parents=True, exist_ok=True)
    st.settings.signing_key()
    st.db.upgrade()


def init(ctx: typer.Context) -> None:
    """Create the deployment folder and database, and apply every migration."""
    st = state(ctx)
    _init(st)
    say(f"deployment ready in {st.settings.home} ({st.db.dialect}, migrations at {st.db.current_revision()})")


def serve(ctx: typer.Context, host: str | None = HostOpt, port: int | None = PortOpt,
          workers: int | None = WorkersOpt) -> None:
    """Apply migrations, then serve the API, the gateway and the console."""
    st = state(ctx)
    host, port = _address(st, host, port)
    server.ensure_free(host, port)
    _init(st)
    _serve(st, host, port, workers if workers is not None else st.settings.workers)


def _address(st: CliState, host: str | None, port: int | None) -> tuple[str, int]:
    return (host if host is not None else st.settings.host), (port if port is not None else st.settings.port)


def _serve(st: CliState, host: str, port: int, workers: int) -> None:
    export_for_workers(st.settings)
    say(f"serving on http://{host}:{port}/ with {workers} worker(s); console at http://{host}:{port}/login")
    server.run(host, port, workers, st.settings.log_level)


def demo(ctx: typer.Context, serve_after: bool = typer.Option(True, "--serve/--no-serve",
         help="Start the server when seeded."), host: str | None = HostOpt, port: int | None = PortOpt) -> None:
    """Create a deployment with synthetic demo content from every module, then serve it."""
    st = state(ctx)
    host, port = _address(st, host, port)
    if serve_after:  # before seeding: not a login printed for whatever server holds the port
        server.ensure_free(host, port)
    _init(st)
    with st.db.session() as session:
        password = core_demo.run(session, st.plugins or plugin_manager(), st.settings, say)
    say(f"\n[bold]sovstack demo[/bold] in {st.settings.home}")
    say(f"  console: http://{host}:{port}/login")
    say(f"  admin login: admin@{core_demo.DEMO_DOMAIN} / {password}")
    say("  other demo users (same password): " + ", ".join(
        f"{k}@{core_demo.DEMO_DOMAIN}" for k, *_ in core_demo.USERS[1:]))
    if serve_after:
        _serve(st, host, port, st.settings.workers)


def inventory(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Components the installed modules manage (what the sovereignty assessor reads)."""
    st = state(ctx)
    pm = st.plugins or plugin_manager()
    with st.ready_db().session() as session:
        items = [asdict(i) for i in flatten(pm.hook.sovstack_inventory(session=session))]
    emit(items, ["module", "kind", "name", "layer", "parties", "jurisdiction"], as_json)


@config_app.command("show")
def config_show(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Effective settings, secrets masked."""
    values = state(ctx).settings.masked()
    help_of = {env: text for env, _default, text in describe()}
    rows = [{"setting": k, "env": f"SOVSTACK_{k.upper()}", "value": v, "help": help_of[f"SOVSTACK_{k.upper()}"]}
            for k, v in values.items()]
    emit(rows, ["setting", "value", "env", "help"], as_json)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply every migration not yet applied."""
    st = state(ctx)
    st.db.upgrade()
    say(f"database at {st.db.current_revision()}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """The applied and the newest migration."""
    st = state(ctx)
    st.db.ping()
    say(f"applied: {st.db.current_revision()}  newest: {st.db.head_revision()}")


def build_cli(pm: pluggy.PluginManager | None = None) -> typer.Typer:
    """The root Typer app with the core commands and every plugin's sub-app."""
    pm = pm or plugin_manager()
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False,
                      context_settings={"obj": pm, "help_option_names": ["-h", "--help"]})
    app.callback(invoke_without_command=True)(_root)
    for fn in (init, serve, demo, inventory):
        app.command()(fn)
    for sub, name in ((config_app, "config"), (db_app, "db"), (org_app, "org"), (user_app, "user"),
                      (invitation_app, "invitation"), (key_app, "key"), (party_app, "party"),
                      (jurisdiction_app, "jurisdiction"), (policy_app, "policy"), (audit_app, "audit")):
        app.add_typer(sub, name=name)
    pm.hook.sovstack_cli(app=app)
    return app


def _validation_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "input"
    return f"{field}: {first.get('msg', 'invalid').removeprefix('Value error, ')}"


def run(args: list[str] | None = None, pm: pluggy.PluginManager | None = None) -> int:
    """Run the CLI and return its exit code: 0 done, 1 refused or failed, 2 bad input.

    A path that cannot be written or created (``--out`` into a missing folder, ``--home`` somewhere
    unwritable) is bad input: one line naming it.
    """
    err = Console(stderr=True, soft_wrap=True)
    try:
        code = build_cli(pm)(args=args, standalone_mode=False)
    except SovstackError as exc:
        err.print(f"error: {exc.line()}", markup=False, highlight=False)
        return exc.exit_code
    except ValidationError as exc:
        err.print(f"error: {_validation_line(exc)}", markup=False, highlight=False)
        return 2
    except OperationalError as exc:
        err.print(f"error: database unavailable: {str(exc.orig).strip().splitlines()[0]}", markup=False)
        return 1
    except OSError as exc:
        if exc.filename is None:  # not a path the user named (a socket, a full disk): a failure to show whole
            raise
        err.print(f"error: {exc.filename}: {exc.strerror}", markup=False, highlight=False)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 1
    except TyperException as exc:  # usage errors: unknown command, bad option value
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {exc}", markup=False)
        return int(getattr(exc, "exit_code", 2))
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run())
