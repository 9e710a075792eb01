"""A bag that is not whole, not ours to read, or a target that is not empty: refused in one line, nothing written."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sovstack.cli import run
from sovstack.core.base import Base
from sovstack.core.db import Database
from sovstack.core.errors import BadInput
from sovstack.core.plugins import plugin_manager
from sovstack.core.settings import Settings
from sovstack.core.tables import User
from sovstack.portability import service
from tests.conftest import make_user
from tests.portability.conftest import Source


def _import(settings: Settings, bag: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run(["--home", str(settings.home), "import", str(bag)])
    return code, capsys.readouterr().err


def _retag(bag: Path, *, manifest: bool = False) -> None:
    """Recompute the manifests after an edit, as someone forging a bag would."""
    if manifest:
        lines = []
        for path in sorted(p for p in (bag / "data").rglob("*") if p.is_file()):
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(bag).as_posix()}\n")
        (bag / "manifest-sha256.txt").write_text("".join(lines))
    tags = [f"{hashlib.sha256((bag / n).read_bytes()).hexdigest()}  {n}\n"
            for n in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt")]
    (bag / "tagmanifest-sha256.txt").write_text("".join(tags))


def _edit_info(bag: Path, label: str, value: str) -> None:
    info = bag / "bag-info.txt"
    info.write_text("".join(f"{label}: {value}\n" if line.startswith(f"{label}:") else f"{line}\n"
                            for line in info.read_text().splitlines()))
    _retag(bag)


def _users(settings: Settings) -> int:
    db = Database(settings)
    try:
        with db.session() as session:
            return int(session.scalar(select(func.count()).select_from(User)) or 0)
    finally:
        db.dispose()


def _an_object(bag: Path) -> Path:
    return next(p for p in (bag / "data" / "objects").rglob("*.parquet"))


@pytest.mark.parametrize("spoil, named", [
    (lambda bag: (bag / "data/tables/users.jsonl").write_bytes(
        (bag / "data/tables/users.jsonl").read_bytes().replace(b"Asha", b"Ashe")), "data/tables/users.jsonl"),
    (lambda bag: (bag / "data/tables/audit_events.jsonl").write_bytes(
        (bag / "data/tables/audit_events.jsonl").read_bytes()[:-500]), "data/tables/audit_events.jsonl"),
    (lambda bag: (bag / "data/extra.csv").write_text("a,b\n"), "data/extra.csv"),
    (lambda bag: (bag / "notes.txt").write_text("hello\n"), "notes.txt"),
    (lambda bag: _an_object(bag).unlink(), "data/objects/data/"),
    (lambda bag: _an_object(bag).write_bytes(_an_object(bag).read_bytes()[:100]), "data/objects/data/"),
    (lambda bag: (bag / "data/datapackage.json").unlink(), "data/datapackage.json"),
    (lambda bag: (bag / "bag-info.txt").write_text("Source-Organization: someone else\n"), "bag-info.txt"),
    (lambda bag: (bag / "bagit.txt").unlink(), "bagit.txt"),
], ids=["altered", "truncated", "extra-payload", "extra-tag", "missing-object", "truncated-object",
        "missing-descriptor", "altered-tag", "not-a-bag"])
def test_a_bag_that_is_not_whole_is_refused_naming_the_file(bag_copy: Path, settings: Settings, spoil: object,
                                                            named: str, capsys: pytest.CaptureFixture[str]) -> None:
    spoil(bag_copy)  # type: ignore[operator]
    code, err = _import(settings, bag_copy, capsys)
    assert code == 2, err
    assert named in err and err.count("\n") == 1, err
    assert _users(settings) == 0
    assert not (settings.home / "objects" / "data").exists()


def test_an_altered_audit_chain_is_refused_even_with_new_checksums(bag_copy: Path, settings: Settings,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    events = bag_copy / "data/tables/audit_events.jsonl"
    events.write_bytes(events.read_bytes().replace(b'"demo"', b'"someone"', 1))
    _retag(bag_copy, manifest=True)
    code, err = _import(settings, bag_copy, capsys)
    assert code == 2 and "audit chain breaks at event 1" in err, err


def test_a_newer_schema_or_format_is_refused(bag_copy: Path, settings: Settings,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _edit_info(bag_copy, "Sovstack-Schema-Revision", "9999_from_the_future")
    code, err = _import(settings, bag_copy, capsys)
    assert code == 2 and "9999_from_the_future is newer" in err, err
    _edit_info(bag_copy, "Sovstack-Export-Format", "2")
    code, err = _import(settings, bag_copy, capsys)
    assert code == 2 and "export format 2, newer than this sovstack reads" in err, err
    _edit_info(bag_copy, "Sovstack-Export-Format", "1")
    _edit_info(bag_copy, "Sovstack-Schema-Revision", "0010_gateway_admin")
    code, err = _import(settings, bag_copy, capsys)
    assert code == 2 and "older than this sovstack's" in err, err
    assert _users(settings) == 0


def test_a_deployment_that_is_not_empty_is_refused(source: Source, settings: Settings,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(settings)
    make_user(db, "already@here.example")
    db.dispose()
    code, err = _import(settings, source.bag, capsys)
    assert code == 2 and "not empty" in err, err
    assert _users(settings) == 1


def test_a_wrong_passphrase_is_refused_before_anything_is_written(source: Source, settings: Settings) -> None:
    db = Database(settings)
    try:
        with pytest.raises(BadInput, match="wrong passphrase"):
            service.import_deployment(db, Base.metadata, source.sealed, passphrase=lambda: "not it",
                                      hooks=plugin_manager())
        with pytest.raises(BadInput, match="passphrase"):
            service.import_deployment(db, Base.metadata, source.sealed, hooks=plugin_manager())
    finally:
        db.dispose()
    assert _users(settings) == 0
    assert not any((settings.home / "objects").rglob("*.parquet")) if (settings.home / "objects").exists() else True


def test_credentials_left_out_appear_nowhere_in_the_bag(source: Source) -> None:
    with source.db.session() as session:
        hashes = [h for h in session.scalars(select(User.password_hash)) if h]
    from sovstack.core.tables import ApiKey
    from sovstack.gateway.tables import Deployment
    with source.db.session() as session:
        hashes += list(session.scalars(select(ApiKey.key_hash)))
        hashes += [k for k in session.scalars(select(Deployment.api_key_encrypted)) if k]
    secrets = [h.encode() for h in hashes] + [source.api_key.encode(), b"sk-upstream-PLAINTEXT"]
    assert len(secrets) >= 10
    for bag in (source.bag, source.sealed):
        for path in (p for p in bag.rglob("*") if p.is_file()):
            data = path.read_bytes()
            found = [s[:12] for s in secrets if s in data]
            assert not found, f"{path.relative_to(bag)} holds {found}"


def test_an_export_refuses_an_existing_output(source: Source, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="already exists"):
        service.export_deployment(source.db, Base.metadata, source.bag)
    with pytest.raises(BadInput, match="passphrase"):
        service.export_deployment(source.db, Base.metadata, tmp_path / "x", secrets="encrypt")
    assert not list(tmp_path.iterdir())
    shutil.rmtree(tmp_path, ignore_errors=True)
