"""The CLI as a user types it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sovstack.cli import run
from sovstack.core.settings import Settings


def cli(settings: Settings, *args: str) -> int:
    return run(["--home", str(settings.home), *args])


def test_init_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "fresh"
    assert run(["--home", str(home), "--database-url", f"sqlite:///{home}/sovstack.db", "init"]) == 0
    assert run(["--home", str(home), "--database-url", f"sqlite:///{home}/sovstack.db", "init"]) == 0
    assert "deployment ready" in capsys.readouterr().out
    assert (home / "sovstack.db").exists() and (home / "secret_key").exists()


def test_org_commands_and_exit_codes(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(settings, "org", "create", "Org One", "--kind", "academic", "--jurisdiction", "IN") == 0
    capsys.readouterr()
    assert cli(settings, "org", "create", "Org One", "--kind", "academic", "--jurisdiction", "IN") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already exists" in err and err.count("\n") == 1
    assert cli(settings, "org", "create", "Org Two", "--kind", "academic", "--jurisdiction", "QQ") == 2
    assert "unknown jurisdiction code 'QQ'" in capsys.readouterr().err
    assert cli(settings, "org", "create", "Org Two", "--kind", "pirate", "--jurisdiction", "IN") == 2
    assert capsys.readouterr().err.startswith("error: kind:")
    assert cli(settings, "org", "list", "--json") == 0
    orgs = json.loads(capsys.readouterr().out)
    assert [o["name"] for o in orgs] == ["Org One"]
    assert cli(settings, "org", "frobnicate") == 2


def test_user_key_lifecycle(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(settings, "user", "create", "ana@test.example", "--name", "Ana", "--password", "long enough pass") == 0
    assert cli(settings, "org", "create", "Org One", "--kind", "startup", "--jurisdiction", "FR") == 0
    assert cli(settings, "user", "grant", "ana@test.example", "--org", "Org One", "--role", "steward") == 0
    assert cli(settings, "user", "grant", "ana@test.example", "--org", "Org One", "--role", "emperor") == 2
    capsys.readouterr()
    assert cli(settings, "key", "create", "laptop", "--user", "ana@test.example", "--json") == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith(created["prefix"] + "_")
    assert cli(settings, "key", "list", "--json") == 0
    listed = capsys.readouterr().out
    assert created["prefix"] in listed and created["key"] not in listed
    assert cli(settings, "key", "revoke", created["prefix"]) == 0
    assert cli(settings, "key", "create", "x", "--user", "ana@test.example", "--scope", "admin") == 2
    assert cli(settings, "key", "revoke", "sk-nothere") == 2


def test_policy_check_explains_and_exits_1_when_refused(settings: Settings,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(settings, "party", "create", "Hyper India", "--kind", "compute_provider", "--jurisdiction", "IN",
               "--parent", "Hyper Inc", "--parent-jurisdiction", "US") == 0
    capsys.readouterr()
    assert cli(settings, "policy", "check", "--classification", "sensitive", "--party", "Hyper India") == 1
    out = capsys.readouterr().out
    assert "refused" in out and "CLOUD Act" in out
    assert cli(settings, "policy", "check", "--classification", "open", "--party", "Hyper India", "--json") == 0
    assert json.loads(capsys.readouterr().out)["allowed"] is True
    assert cli(settings, "policy", "check", "--classification", "top-secret") == 2


def test_policy_set_from_file(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(settings, "policy", "show", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    doc["levels"]["restricted"]["hosting_jurisdictions"] = ["EU", "IN"]
    good = tmp_path / "p.json"
    good.write_text(json.dumps(doc))
    assert cli(settings, "policy", "set", str(good)) == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert cli(settings, "policy", "set", str(bad)) == 2
    doc["levels"]["open"]["modes"] = ["teleport"]
    bad.write_text(json.dumps(doc))
    assert cli(settings, "policy", "set", str(bad)) == 2
    capsys.readouterr()
    cli(settings, "policy", "show", "--json")
    assert json.loads(capsys.readouterr().out)["levels"]["restricted"]["hosting_jurisdictions"] == ["EU", "IN"]


def test_audit_verify_export_and_tamper(settings: Settings, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cli(settings, "org", "create", "Org One", "--kind", "academic", "--jurisdiction", "IN")
    cli(settings, "party", "create", "P One", "--kind", "chip_vendor", "--jurisdiction", "TW")
    assert cli(settings, "audit", "verify") == 0
    assert "intact" in capsys.readouterr().out
    out = tmp_path / "audit.jsonl"
    assert cli(settings, "audit", "export", "-o", str(out), "--action", "parties.*") == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["action"] for x in lines] == ["parties.create"]
    import sqlite3

    if settings.is_sqlite:
        with sqlite3.connect(settings.home / "sovstack.db") as conn:
            conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1")
        capsys.readouterr()
        assert cli(settings, "audit", "verify") == 1
        assert "broken at event 1" in capsys.readouterr().out


def test_config_show_masks_secrets(settings: Settings, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOVSTACK_SECRET_KEY", "do-not-print-me")
    assert cli(settings, "config", "show", "--json") == 0
    out = capsys.readouterr().out
    rows = {r["setting"]: r["value"] for r in json.loads(out)}
    assert "do-not-print-me" not in out and rows["secret_key"] == "********"
    assert rows["home"] == str(settings.home)


def test_commands_refuse_an_uninitialised_deployment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["--home", str(tmp_path / "empty"), "--database-url", f"sqlite:///{tmp_path}/empty.db", "org", "list"])
    assert code == 1 and "sovstack init" in capsys.readouterr().err


def test_database_down_is_one_line_not_a_trace(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sovstack", "--home", str(tmp_path),
         "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none", "serve", "--port", "1"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: database unreachable") and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_demo_seeds_every_role_and_is_rerunnable(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(settings, "demo", "--no-serve") == 0
    assert "admin login: admin@demo.sovstack.example / " in capsys.readouterr().out
    assert cli(settings, "demo", "--no-serve") == 0
    capsys.readouterr()
    assert cli(settings, "user", "list", "--json") == 0
    users = json.loads(capsys.readouterr().out)
    roles = {r.split("@")[0] for u in users for r in u["roles"]}
    assert roles == {"org_admin", "steward", "reviewer", "member"}
    assert any(u["is_admin"] for u in users) and len(users) == 6
    assert cli(settings, "invitation", "list", "--as", "member@demo.sovstack.example", "--json") == 0
    [invited] = json.loads(capsys.readouterr().out)
    assert (invited["organisation"], invited["role"], invited["status"]) == (
        "Synthetic Ministry of Digital Affairs", "reviewer", "pending")
    assert cli(settings, "party", "list", "--json") == 0
    parties = json.loads(capsys.readouterr().out)
    assert len(parties) == 6 and any(p["parent_jurisdiction"] == "US" and p["jurisdiction"] == "IN" for p in parties)
    assert cli(settings, "audit", "verify") == 0


def test_version_and_bare_command(capsys: pytest.CaptureFixture[str]) -> None:
    from sovstack import __version__

    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__
    assert run([]) == 0
    assert "Usage" in capsys.readouterr().out
