"""`sovstack compute` as a user types it: one-line errors (bad input exits 2, a refusal 1), --as acting with that user's
roles, a round allocated and a cut-off dry run from the shell."""

from __future__ import annotations

import json

import pytest

from sovstack.cli import run
from sovstack.core.settings import Settings
from tests.compute.conftest import START, Exchange


def _cli(settings: Settings, *args: str) -> int:
    return run(["--home", str(settings.home), "compute", *args])


def test_the_compute_commands_end_to_end(exchange: Exchange, settings: Settings,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    until = START.replace(day=START.day + 27).isoformat()
    base = ["offer-add", "--provider", "domestic", "--gpu-type", "H100", "--from", START.isoformat(),
            "--until", until, "--benchmark", "run 1", "--price", "100"]
    assert _cli(settings, *base, "--gpus", "0") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "gpu_count" in err and err.count("\n") == 1
    stranger = ("--as", "stranger@test.example")
    assert _cli(settings, *base, "--gpus", "16", *stranger) == 1  # refused: not the provider's staff
    assert "this needs the role" in capsys.readouterr().err
    assert _cli(settings, *base, "--gpus", "16", "--as", "staff@test.example") == 0
    assert _cli(settings, "programme-add", "ccp", "--title", "CLI test", "--budget", "1000000", "--start",
                START.isoformat(), "--periods", "4", "--cap-provider", "1", "--cap-group", "1",
                "--cap-foreign", "1", "--cap-chip-vendor", "1") == 0
    assert _cli(settings, "round-open", "ccp", "--deadline", until) == 0
    assert _cli(settings, "apply", "ccp", "--as", "applicant@test.example", "--organisation", "Test University",
                "--title", "CLI job", "--gpu-types", "H100", "--gpus-per-job", "8", "--gpu-hours", "1344",
                "--latest", "3", "--json") == 0
    capsys.readouterr()
    assert _cli(settings, "requests", "--json") == 0
    [request] = json.loads(capsys.readouterr().out)
    assert _cli(settings, "review", str(request["id"]), "--score", "8", "--as", "conflicted@test.example") == 1
    assert "conflict of interest" in capsys.readouterr().err
    assert _cli(settings, "review", str(request["id"]), "--score", "8", "--as", "reviewer@test.example") == 0
    assert _cli(settings, "allocate", "ccp") == 0
    assert "proven gap" in capsys.readouterr().out
    assert _cli(settings, "cutoff", "--provider", "domestic", "--dry-run") == 0
    assert "1 requests displaced" in capsys.readouterr().out
    assert _cli(settings, "cutoff", "--provider", "nobody") == 2
