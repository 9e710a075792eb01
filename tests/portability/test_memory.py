"""Memory stays bounded however large a table or an object is: rows and bytes are streamed, never held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sovstack.core import audit
from sovstack.core.db import Database
from tests.portability.bulk import big_object, fill
from tests.portability.conftest import sqlite_settings

EVENTS, USAGE, MEGABYTES = 200_000, 100_000, 200
LIMIT_MB = 100

# Export then import in a fresh process, its resident memory sampled every 5 ms (bytes, Linux).
EXPORT_THEN_IMPORT = """
import json, os, sys, threading, time
from pathlib import Path
from sovstack.core.base import Base
from sovstack.core.db import Database
from sovstack.core.plugins import plugin_manager
from sovstack.core.settings import Settings
from sovstack.portability import service

source, target, bag = (Path(a) for a in sys.argv[1:4])
hooks = plugin_manager()
def settings(home, secret):
    return Settings(home=home, environment="test", secret_key=secret, database_url=f"sqlite:///{home}/sovstack.db")
src, dst = Database(settings(source, sys.argv[4])), Database(settings(target, sys.argv[5]))
for db in (src, dst):  # connect and warm up before the baseline
    db.ping()
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page
highest, running = [resident()], [True]
def sample():
    while running[0]:
        highest[0] = max(highest[0], resident())
        time.sleep(0.005)
before = resident()
sampler = threading.Thread(target=sample)
sampler.start()
service.export_deployment(src, Base.metadata, bag)
after_export, highest[0] = highest[0], resident()
imported = service.import_deployment(dst, Base.metadata, bag, hooks=hooks)
running[0] = False
sampler.join()
print(json.dumps({"before": before, "export": after_export, "import": highest[0], "rows": imported.rows,
                  "bytes": imported.object_bytes}))
"""


def test_a_large_table_and_object_go_through_in_bounded_memory(tmp_path: Path) -> None:
    source_settings = sqlite_settings(tmp_path / "source")
    target_settings = sqlite_settings(tmp_path / "target", secret="target-secret-of-the-memory-test")
    source, target = Database(source_settings), Database(target_settings)
    try:
        source.upgrade()
        target.upgrade()
        fill(source, events=EVENTS, usage=USAGE)
        big_object(source_settings.home / "objects", MEGABYTES)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOVSTACK_")}
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        done = subprocess.run([sys.executable, "-c", EXPORT_THEN_IMPORT, str(source_settings.home),
                               str(target_settings.home), str(tmp_path / "bag"),
                               source_settings.secret_key.get_secret_value(),
                               target_settings.secret_key.get_secret_value()],
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout)
        assert seen["rows"] > EVENTS + USAGE and seen["bytes"] >= MEGABYTES << 20
        growth_mb = (max(seen["export"], seen["import"]) - seen["before"]) / 2**20
        assert growth_mb < LIMIT_MB, seen
        with target.session() as session:
            assert audit.verify(session).ok and audit.length(session) == EVENTS
    finally:
        source.dispose()
        target.dispose()
