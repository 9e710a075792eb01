"""The docs follow the code: settings, CLI commands, hooks and API paths are all documented."""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from sovstack.app import create_app
from sovstack.core.plugins import Hooks
from sovstack.core.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
REGENERATE = "run `python docs/gen_cli.py` and commit the result"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _generator()


def _read(relative: str) -> str:
    return (DOCS / relative).read_text()


def test_every_setting_is_documented() -> None:
    page = _read("reference/settings.md")
    missing = [name for name in Settings.model_fields
               if f"`{name}`" not in page or f"SOVSTACK_{name.upper()}" not in page]
    assert not missing, f"settings missing from docs/reference/settings.md: {missing}; {REGENERATE}"


def test_settings_reference_is_current(gen: ModuleType) -> None:
    assert _read("reference/settings.md") == gen.settings_reference(), REGENERATE


def test_every_cli_command_is_documented(gen: ModuleType) -> None:
    page = _read("reference/cli.md")
    paths = gen.command_paths()
    assert "sovstack key create" in paths
    missing = [path for path in paths if f"## {path}\n" not in page]
    assert not missing, f"commands missing from docs/reference/cli.md: {missing}; {REGENERATE}"


def test_cli_reference_is_current(gen: ModuleType) -> None:
    assert _read("reference/cli.md") == gen.cli_reference(), REGENERATE


def test_every_hook_is_documented() -> None:
    page = _read("extending.md")
    hooks = [name for name in vars(Hooks) if name.startswith("sovstack_")]
    assert hooks
    missing = [name for name in hooks if f"`{name}`" not in page]
    assert not missing, f"hooks missing from docs/extending.md: {missing}"


def _api_paths() -> set[str]:
    with tempfile.TemporaryDirectory() as home:
        app = create_app(Settings(home=Path(home), environment="test", secret_key="docs-test"))
        paths = set(app.openapi()["paths"])
        app.state.db.dispose()
    return {p for p in paths if p.startswith("/api/v1/")}


def test_every_api_path_is_documented() -> None:
    page = _read("reference/api.md")
    paths = _api_paths()
    assert "/api/v1/me" in paths
    missing = sorted(p for p in paths if f"`{p}`" not in page)
    assert not missing, f"paths missing from docs/reference/api.md: {missing}; {REGENERATE}"


def test_api_endpoint_table_is_current(gen: ModuleType) -> None:
    page = _read("reference/api.md")
    assert gen.with_endpoints(page) == page, REGENERATE


def test_docs_links_resolve() -> None:
    """Relative links between the Markdown pages point at files that exist."""
    broken = []
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+?\.md)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).is_file():
                broken.append(f"{page.relative_to(DOCS)} → {target}")
    assert not broken, f"broken links: {broken}"
