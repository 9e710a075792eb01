"""The CLI as a user types it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sovstack.cli import run
from sovstack.core.settings import Settings
from tests.conftest import LAUGHS, free_port, server_env


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
         "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none", "serve", "--port", str(free_port())],
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


# Bad input, anywhere: every command that reads a file answers a bad one with exit 2 and its name (#14) ----------

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "sovstack" / "assess" / "examples" / "national-cloud.yaml"
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "binary": (bytes(range(256)) * 4, "binary data, not text"),
    "latin1": ("name: Café\nhome: FR\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at line 1, column 10)"),
    "empty": (b"\n", "the file is empty"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nest"),  # ours, or libyaml's "exceeded maximum nesting depth"
    "laughs": (LAUGHS.encode(), "its YAML aliases expand it to over 100,000 values"),
}
READERS = {
    "assess run": ["assess", "run", "{f}"],
    "assess drill": ["assess", "drill", "{f}"],
    "assess diff": ["assess", "diff", str(EXAMPLE), "{f}"],
    "assess import": ["assess", "import", "{f}", "--home-jurisdiction", "FR"],
    "assess run --criteria": ["assess", "run", str(EXAMPLE), "--no-drills", "--criteria", "{f}"],
    "assess drill --scenarios-file": ["assess", "drill", str(EXAMPLE), "--scenarios-file", "{f}"],
    "gateway apply": ["gateway", "apply", "{f}"],
    "policy set": ["policy", "set", "{f}"],
}


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("command", READERS)
def test_every_command_that_reads_a_file_refuses_a_bad_one_in_a_line(
        settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, kind: str) -> None:
    content, problem = BAD_FILES[kind]
    bad = tmp_path / f"{kind}.yaml"
    bad.write_bytes(content)
    if kind == "laughs" and command == "policy set":
        problem = "not valid JSON"  # a policy is JSON only
    assert cli(settings, *[a.format(f=bad) for a in READERS[command]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and bad.name in err and problem in err and "Traceback" not in err
    if kind in ("binary", "latin1", "empty"):  # the file cannot be read: one line, whatever the command
        assert err.count("\n") == 1


def test_a_latin1_file_is_one_line_from_the_real_command(tmp_path: Path) -> None:
    latin1 = tmp_path / "stack.yaml"
    latin1.write_bytes((EXAMPLE.read_text() + "# Souveraineté numérique\n").encode("latin-1"))
    proc = subprocess.run([sys.executable, "-m", "sovstack", "assess", "run", str(latin1)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {latin1}: not UTF-8 text (byte 0x") and "save it as UTF-8" in proc.stderr
    assert proc.stderr.count("\n") == 1
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(yaml.safe_load(EXAMPLE.read_text()), default=str).encode())
    proc = subprocess.run([sys.executable, "-m", "sovstack", "assess", "run", str(bom), "--no-drills"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_postgres_url_connects_with_psycopg_and_a_foreign_one_says_what_to_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--home", str(tmp_path), "--database-url", "postgres://nobody@127.0.0.1:1/none", "db", "current"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: database unreachable") and err.count("\n") == 1
    assert run(["--home", str(tmp_path), "--database-url", "mysql://nobody@127.0.0.1:1/none", "db", "current"]) == 2
    assert capsys.readouterr().err == (
        "error: database_url: unsupported scheme 'mysql://': write postgresql://USER:PASSWORD@HOST:5432/DATABASE "
        "(postgres:// and postgresql+psycopg:// work too) or sqlite:///PATH, or leave it empty for the SQLite file "
        "under home\n")


def test_a_broken_sovstack_toml_or_a_home_that_is_a_file_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOVSTACK_HOME", str(tmp_path))
    (tmp_path / "sovstack.toml").write_bytes(b"\x00\xff")
    assert run(["config", "show"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'sovstack.toml'}: not valid TOML: ")
    (tmp_path / "sovstack.toml").unlink()
    assert run(["--home", str(EXAMPLE), "init"]) == 2
    assert capsys.readouterr().err == f"error: home: {EXAMPLE} exists and is not a folder\n"


def sovstack(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it, on this test's deployment; a server that starts fails the test."""
    return subprocess.run([sys.executable, "-m", "sovstack", *args], env=server_env(settings),
                          capture_output=True, text=True, timeout=30)


def test_serve_and_demo_refuse_a_port_out_of_range(settings: Settings) -> None:
    for command in ("serve", "demo"):
        for port, bound in (("99999", "less than or equal to 65535"), ("0", "greater than or equal to 1")):
            proc = sovstack(settings, command, "--port", port)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr
            assert f"Error: Invalid value for '--port': Input should be {bound}" in proc.stderr
    assert sovstack(settings, "serve", "--workers", "0").returncode == 2


def test_serve_and_demo_on_a_busy_port_stop_before_any_work(
        settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        fresh = tmp_path / "fresh"
        for command in ("serve", "demo"):
            proc = sovstack(settings, "--home", str(fresh), command, "--port", port)
            assert proc.returncode == 2, proc.stderr
            assert proc.stdout == "" and proc.stderr == (
                f"error: port {port} on 127.0.0.1 is in use by another program: choose another with --port\n")
            assert not fresh.exists(), "nothing is created, migrated or seeded"
        proc = sovstack(settings, "serve", "--host", "no-such-host.invalid", "--port", port)
        assert proc.returncode == 2 and proc.stderr.startswith("error: cannot listen on 'no-such-host.invalid': ")
        assert cli(settings, "demo", "--no-serve", "--port", port) == 0  # seeding alone needs no port
        assert "admin login: admin@demo.sovstack.example" in capsys.readouterr().out


def test_an_output_or_home_path_that_cannot_be_created_is_one_line(
        settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-folder"
    assert cli(settings, "assess", "run", str(EXAMPLE), "--no-drills", "-o", str(missing / "report.md")) == 2
    assert capsys.readouterr().err == f"error: {missing / 'report.md'}: No such file or directory\n"
    assert cli(settings, "audit", "export", "-o", str(missing / "audit.jsonl")) == 2
    assert capsys.readouterr().err == f"error: {missing / 'audit.jsonl.partial'}: No such file or directory\n"
    assert cli(settings, "audit", "export", "-o", str(tmp_path)) == 2  # a folder: refused before any work
    assert f"'{tmp_path}' is a directory" in capsys.readouterr().err
    assert run(["--home", str(EXAMPLE / "home"), "init"]) == 2  # under a file: cannot be created
    assert capsys.readouterr().err == f"error: {EXAMPLE / 'home'}: Not a directory\n"


def test_a_date_that_is_not_one_is_a_usage_error(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    bom = Path(__file__).resolve().parent / "assess" / "fixtures" / "stack.cdx.json"
    assert cli(settings, "assess", "import", str(bom), "--home-jurisdiction", "IN", "--as-of", "30/06/2026") == 2
    assert "Invalid value for '--as-of'" in capsys.readouterr().err
    assert cli(settings, "data", "create", "rain", "--title", "Rain", "--publisher", "x", "--licence", "CC0-1.0",
               "--classification", "open", "--storage", "IN", "--temporal-end", "2026-13-01") == 2
    assert "Invalid value for '--temporal-end'" in capsys.readouterr().err
