"""Export a demo deployment, import it into the suite's database (SQLite, or PostgreSQL in CI), export again."""

from __future__ import annotations

import tarfile
from pathlib import Path

import bagit
import pytest
from fastapi.testclient import TestClient
from frictionless import Package

from sovstack.app import create_app
from sovstack.cli import run
from sovstack.core import audit, identity
from sovstack.core.base import Base
from sovstack.core.db import Database
from sovstack.core.plugins import plugin_manager
from sovstack.core.settings import MACHINE_BOUND, Settings
from sovstack.gateway import service as gateway
from sovstack.gateway.secrets import unseal
from sovstack.portability import service
from tests.conftest import make_key, make_user
from tests.portability.conftest import PASSPHRASE, UPSTREAM_KEY, Source

LISTINGS = ["/api/v1/organisations", "/api/v1/users", "/api/v1/parties", "/api/v1/data/datasets",
            "/api/v1/gateway/models", "/api/v1/gateway/deployments", "/api/v1/compute/providers",
            "/api/v1/compute/programmes", "/api/v1/compute/allocations", "/api/v1/compute/requests"]
LISTER = "listing-admin@test.example"  # the admin each side makes to list them
# What may differ between the two bags' tag files: the dates, and the count of credentials left out (the
# first export left them out, so the second has none to leave out).
DATED = ("Bagging-Date", "Sovstack-Created", "Sovstack-Credentials")


def _listings(settings: Settings) -> dict[str, object]:
    app = create_app(settings)
    try:
        db: Database = app.state.db
        admin = make_user(db, LISTER, admin=True)
        key = make_key(db, admin["id"], ["read", "write", "admin"])
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            answers = {}
            for path in LISTINGS:
                response = client.get(path)
                assert response.status_code == 200, (path, response.text)
                answers[path] = response.json()
        return answers
    finally:
        app.state.db.dispose()


def _without_credentials(value: object) -> object:
    """The listing, less what tells whether a credential is held (left out by --secrets omit)."""
    if isinstance(value, list):  # and less the admin each side made to list them
        return [_without_credentials(v) for v in value if not (isinstance(v, dict) and v.get("email") == LISTER)]
    if isinstance(value, dict):
        return {k: _without_credentials(v) for k, v in value.items() if k not in ("has_api_key",)}
    return value


def _tags_without_dates(bag: Path) -> list[str]:
    return [line for line in (bag / "bag-info.txt").read_text().splitlines() if not line.startswith(DATED)]


def test_round_trip_gives_the_same_payload_byte_for_byte(source: Source, settings: Settings, tmp_path: Path) -> None:
    db = Database(settings)
    try:
        result = service.import_deployment(db, Base.metadata, source.bag, hooks=plugin_manager())
        assert result.rows > 100 and result.objects >= 3
        with db.session() as session:
            assert audit.verify(session).ok
        again = service.export_deployment(db, Base.metadata, tmp_path / "again")
    finally:
        db.dispose()
    manifest = "manifest-sha256.txt"
    assert (source.bag / manifest).read_bytes() == (tmp_path / "again" / manifest).read_bytes()
    assert _tags_without_dates(source.bag) == _tags_without_dates(tmp_path / "again")
    assert again.tables == result.tables
    # The target's chain goes on from the source's: new events verify.
    theirs, ours = _listings(source.settings), _listings(settings)
    for path in LISTINGS:
        assert _without_credentials(theirs[path]) == _without_credentials(ours[path]), path
    with Database(settings).session() as session:
        assert audit.verify(session).ok and audit.length(session) > result.tables["audit_events"]


def test_the_bag_passes_independent_readers(source: Source) -> None:
    bagit.Bag(str(source.bag)).validate()  # Library of Congress
    report = Package(str(source.bag / "data" / "datapackage.json")).validate()
    assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])[:10]
    bagit.Bag(str(source.sealed)).validate()


def test_every_table_is_in_the_bag_but_runtime_state(source: Source) -> None:
    """Driven by the metadata: a table a module adds later is exported without edits."""
    names = {p.stem for p in (source.bag / "data" / "tables").iterdir()}
    expected = {t.name for t in Base.metadata.sorted_tables if not t.info.get("runtime")}
    assert names == expected
    assert {"console_sessions", "login_throttle"}.isdisjoint(names)
    assert set(MACHINE_BOUND) <= set(Settings.model_fields)


def test_tar_through_the_cli(source: Source, settings: Settings, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deployment.tar"
    home = str(source.settings.home)
    url = source.settings.database_url
    assert run(["--home", home, "--database-url", url, "export", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "users must reset their passwords" in said and "users.password_hash" in said
    with tarfile.open(out) as tar:
        assert "deployment/bagit.txt" in tar.getnames()
    assert run(["--home", str(settings.home), "import", str(out)]) == 0
    assert "imported" in capsys.readouterr().out
    assert run(["--home", str(settings.home), "audit", "verify"]) == 0
    assert run(["--home", home, "--database-url", url, "export", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_login_and_keys_after_an_import_with_sealed_credentials(source: Source, settings: Settings) -> None:
    db = Database(settings)
    try:
        result = service.import_deployment(db, Base.metadata, source.sealed, passphrase=lambda: PASSPHRASE,
                                           hooks=plugin_manager())
        assert result.credentials["users.password_hash"] == 6
        with db.session() as session:
            token, _s = identity.login(session, "admin@demo.sovstack.example", source.password, max_failures=5,
                                       lockout_seconds=60, max_age=3600)
            who = identity.authenticate_key(session, source.api_key)
            session.commit()
        assert token and who.email == "admin@demo.sovstack.example"
        with db.session() as session:
            keys = {unseal(settings, d.api_key_encrypted) for d in gateway.list_deployments(session)}
        assert UPSTREAM_KEY in keys  # sealed again under this deployment's own secret
    finally:
        db.dispose()

