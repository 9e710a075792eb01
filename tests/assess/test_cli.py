"""`sovstack assess …` as a user types it, without a deployment or a database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sovstack.cli import run

from .conftest import EXAMPLES, FIXTURES, small

NATIONAL = str(EXAMPLES / "national-cloud.yaml")


def test_run_writes_every_format_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "never-created"
    for fmt in ("json", "md", "html", "cyclonedx"):
        out = tmp_path / f"report.{fmt}"
        assert run(["--home", str(home), "assess", "run", NATIONAL, "--format", fmt, "--out", str(out)]) == 0
        assert out.stat().st_size > 1000
    assert not home.exists()
    assert json.loads((tmp_path / "report.json").read_text())["gate"]["level"] == 0


def test_run_explain_and_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["assess", "run", NATIONAL, "--no-drills", "--explain", "layers.chips", "--mode", "strict"]) == 0
    expanded = json.loads(capsys.readouterr().out)
    assert expanded["mode"] == "strict" and {a["component"] for a in expanded["answers"]} == {"gpu-cluster"}
    assert run(["assess", "run", NATIONAL, "--mode", "lenient"]) == 2


def test_a_bad_manifest_prints_every_problem_with_its_path_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = small(home="QQ")
    doc["components"][0]["layer"] = "quantum"
    doc["components"][1]["remote_disable"] = "maybe"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert run(["assess", "run", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: the manifest has 2 problem(s):"
    assert err[1].startswith("  components[0].layer:") and err[2].startswith("  components[1].remote_disable:")
    doc = small(home="QQ")
    doc["components"][0]["depends_on"] = ["app"]
    bad.write_text(yaml.safe_dump(doc))
    assert run(["assess", "run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "home: unknown jurisdiction code 'QQ'" in err and "dependency cycle: gpu → app → gpu" in err


def test_drill_diff_import_and_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["assess", "drill", NATIONAL, "--scenario", "region-loss", "--format", "json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["scenario"] == "region-loss" and result["time_to_recover_days"] == 2.0
    assert run(["assess", "drill", NATIONAL, "--scenario", "nope"]) == 2
    capsys.readouterr()
    report = tmp_path / "before.json"
    assert run(["assess", "run", str(EXAMPLES / "hyperscaler-region.yaml"), "--format", "json", "-o", str(report)]) == 0
    assert run(["assess", "diff", str(report), NATIONAL]) == 0
    assert "| score |" in capsys.readouterr().out
    manifest = tmp_path / "imported.yaml"
    assert run(["assess", "import", str(FIXTURES / "stack.cdx.json"), "--home-jurisdiction", "IN",
                "--as-of", "2026-06-30", "-o", str(manifest)]) == 0
    assert "still missing" in capsys.readouterr().err
    assert run(["assess", "run", str(manifest), "--format", "json"]) == 0
    capsys.readouterr()
    old = tmp_path / "old.cdx.json"
    old.write_text((FIXTURES / "stack.cdx.json").read_text().replace('"1.6"', '"1.5"'))
    assert run(["assess", "import", str(old), "--home-jurisdiction", "IN"]) == 2
    assert "CycloneDX 1.5 is not supported" in capsys.readouterr().err
    for what in ("manifest", "report"):
        assert run(["assess", "schema", "--what", what]) == 0
        schema = json.loads(capsys.readouterr().out)
        assert schema["$schema"].endswith("2020-12/schema") and schema["type"] == "object"
