"""A demo deployment on SQLite to export (whatever database the suite runs on), and its bags."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update

from sovstack.core import demo as core_demo
from sovstack.core import identity
from sovstack.core.base import Base
from sovstack.core.context import CORE_SCOPES, Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.plugins import plugin_manager
from sovstack.core.schemas import ApiKeyCreate
from sovstack.core.settings import Settings
from sovstack.gateway import secrets as upstream
from sovstack.gateway.tables import Deployment
from sovstack.portability import service

SOURCE_SECRET = "another-deployment-another-secret-key"  # not the suite's: sealed values must be sealed again
UPSTREAM_KEY = "sk-upstream-PLAINTEXT-1234567890"
PASSPHRASE = "correct horse battery staple, exported"
OPERATOR = Principal.system("test")


@dataclass
class Source:
    settings: Settings
    db: Database
    password: str  # of every demo user
    api_key: str  # a key of admin@demo…, made before the export
    bag: Path  # --secrets omit
    sealed: Path  # --secrets encrypt with PASSPHRASE


def sqlite_settings(home: Path, secret: str = SOURCE_SECRET) -> Settings:
    """A deployment on its own SQLite file, even when the suite runs on PostgreSQL."""
    return Settings(home=home, environment="test", secret_key=secret, database_url=f"sqlite:///{home}/sovstack.db")


@pytest.fixture(scope="package")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """The demo of every module, an API key and an upstream key, exported twice (omit and encrypt)."""
    root = tmp_path_factory.mktemp("source")
    settings = sqlite_settings(root / "home")
    db = Database(settings)
    db.upgrade()
    pm = plugin_manager()
    with db.session() as session:
        password = core_demo.run(session, pm, settings, lambda _line: None)
    with db.session() as session, unit_of_work(session, OPERATOR):
        admin = identity.get_user(session, f"admin@{core_demo.DEMO_DOMAIN}")
        _key, api_key = identity.create_api_key(session, OPERATOR, ApiKeyCreate(
            name="kept", scopes=["read", "write", "admin"], user_id=admin.id), known_scopes=list(CORE_SCOPES))
        session.execute(update(Deployment).where(Deployment.id == session.query(Deployment.id).order_by(
            Deployment.id).limit(1).scalar_subquery()).values(api_key_encrypted=upstream.seal(settings, UPSTREAM_KEY)))
    service.export_deployment(db, Base.metadata, root / "bag")
    service.export_deployment(db, Base.metadata, root / "sealed", secrets="encrypt", passphrase=PASSPHRASE)
    yield Source(settings, db, password, api_key, root / "bag", root / "sealed")
    db.dispose()


@pytest.fixture
def bag_copy(source: Source, tmp_path: Path) -> Path:
    """A copy of the source's bag to spoil."""
    return Path(shutil.copytree(source.bag, tmp_path / "bag"))
