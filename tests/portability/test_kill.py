"""An import killed (SIGKILL) while it loads rows leaves the target as it was; the next import succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from sovstack.core import audit
from sovstack.core.base import Base
from sovstack.core.db import Database
from sovstack.core.plugins import plugin_manager
from sovstack.core.settings import Settings
from sovstack.portability import service
from tests.conftest import server_env
from tests.portability.conftest import Source

# Imports the bag and stops for good once the first rows are in (inside the transaction), saying so.
STALLING_IMPORT = """
import sys, time
from pathlib import Path
from sovstack.core.base import Base
from sovstack.core.db import Database
from sovstack.core.plugins import plugin_manager
from sovstack.core.settings import Settings
from sovstack.portability import service

class Stall:
    def task(self, description, total):
        def advance(n):
            if description == "load":
                print("rows inserted", flush=True)
                time.sleep(600)
        return advance

service.import_deployment(Database(Settings()), Base.metadata, Path(sys.argv[1]), hooks=plugin_manager(),
                          progress=Stall())
"""


def _rows(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in Base.metadata.sorted_tables if not t.info.get("singleton")}


def test_a_killed_import_leaves_the_target_as_it_was(source: Source, settings: Settings) -> None:
    db = Database(settings)
    try:
        before = _rows(db)
        assert sum(before.values()) == 0
        env = {**server_env(settings), "PYTHONPATH": os.pathsep.join(sys.path)}
        child = subprocess.Popen([sys.executable, "-c", STALLING_IMPORT, str(source.bag)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == b"rows inserted\n", child.stderr.read() if child.stderr else line
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close() if child.stderr else None
        assert _rows(db) == before
        assert not list((settings.home / "objects").glob("data/**/*.parquet"))
        with db.session() as session:
            assert audit.length(session) == 0 and audit.verify(session).ok
        result = service.import_deployment(db, Base.metadata, source.bag, hooks=plugin_manager())
        assert result.tables["users"] == 6 and _rows(db)["users"] == 6
        with db.session() as session:
            assert audit.verify(session).ok
    finally:
        db.dispose()


def test_objects_are_placed_only_with_the_rows(source: Source, settings: Settings, tmp_path: Path) -> None:
    """An import that fails while loading puts no object in the store."""
    db = Database(settings)

    class Fail:
        def task(self, description: str, total: float | None) -> object:
            def advance(n: float) -> None:
                if description == "load":
                    raise KeyboardInterrupt
            return advance

    try:
        try:
            service.import_deployment(db, Base.metadata, source.bag, progress=Fail())  # type: ignore[arg-type]
        except KeyboardInterrupt:
            pass
        assert sum(_rows(db).values()) == 0
        assert not list((settings.home / "objects").rglob("*.parquet"))
        assert not list((settings.home / "objects" / "tmp").iterdir())
    finally:
        db.dispose()
