"""The DuckDB worker: one locked-down process per query, and the parent-side client that runs it.

The parent never runs user SQL in its own process (DuckDB's replacement scans read host-process
objects, and a crash or runaway query must not take the server with it). ``execute`` starts
``python -m sovstack.data.engine`` with an empty environment, an empty HOME and a fresh working
directory, sends one JSON request on stdin and reads one JSON reply from stdout.

The worker opens an in-memory database and, before any user SQL, allows exactly the granted Parquet
files, turns external access off, turns extension loading and persistent secrets off, sets the memory,
thread, temp-space and statement-time limits, creates one view per granted table and locks the
configuration. The parent also enforces the wall-clock limit: it kills the worker ``GRACE_SECONDS``
after the query's own limit.

The lockdown allows files, not readers: any reader (``read_blob`` included) can open an allowed
file, so the raw bytes of a granted Parquet file are kept from an aggregate-mode analyst by the
checker in ``sandbox``, which refuses every table function. Only the files a query names are allowed.

Errors reach the caller as ``sovstack.core.errors``: ``Refused`` (the lockdown said no), ``BadInput``
(DuckDB rejected the SQL; its first line only), ``LimitExceeded`` (time, memory or result size) and
``Unavailable`` (the worker could not start, lock down or finish).
"""

from __future__ import annotations

import base64
import logging
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson

from sovstack.core.errors import BadInput, Refused, Unavailable

log = logging.getLogger(__name__)

GRACE_SECONDS = 1.5          # process start-up (~0.15 s) and lockdown, on top of the query's own limit
MAX_REPLY_BYTES = 64 << 20   # the largest result the worker sends back
_GLOB_CHARACTERS = set("*?[]{}")
TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class LimitExceeded(BadInput):
    """The query went past one of its limits (time, memory or result size) and was stopped."""

    type = "limit_exceeded"


@dataclass(frozen=True)
class Limits:
    """What one query may use."""

    memory_mb: int = 512
    threads: int = 1
    seconds: float = 10.0
    max_rows: int = 1000

    def __post_init__(self) -> None:
        for name in ("memory_mb", "threads", "max_rows"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} must be at least 1", field=name)
        if not 0 < self.seconds <= 3600:
            raise BadInput("seconds must be more than 0 and at most 3600", field="seconds")


@dataclass(frozen=True)
class EngineResult:
    """Rows as plain JSON values (datetimes as ISO strings, decimals as floats, blobs as base64)."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    seconds: float  # running and fetching the query inside the worker, excluding start-up and lockdown


def execute(sql: str, tables: dict[str, Path], limits: Limits) -> EngineResult:
    """Run one SQL statement in a fresh locked-down worker that can read only ``tables``' files."""
    reply = _in_worker({"sql": sql, "tables": _table_files(tables), "limits": asdict(limits)}, limits)
    return EngineResult(columns=reply["columns"], rows=reply["rows"], truncated=reply["truncated"],
                        seconds=reply["seconds"])


def execute_private(request: dict[str, Any], path: Path, limits: Limits) -> dict[str, Any]:
    """Release one differentially private answer (``private.answer``) in a fresh worker over one file."""
    return _in_worker({"private": request, "path": _table_files({"private": path})["private"]}, limits)


def _in_worker(request: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Send ``request`` to a fresh worker with an empty HOME and working directory; its reply, or the error."""
    with tempfile.TemporaryDirectory(prefix="sovstack-sandbox-") as root:
        home, work = Path(root, "home"), Path(root, "work")
        home.mkdir()
        work.mkdir()
        body = orjson.dumps({**request, "home": str(home)})
        reply = _run_worker(body, work, home, limits.seconds, threads=limits.threads)
    if "error" in reply:
        raise _error(reply["error"], limits)
    return reply


def _table_files(tables: dict[str, Path]) -> dict[str, str]:
    files = {}
    for name, path in tables.items():
        if not TABLE_NAME.fullmatch(name):
            raise BadInput(f"{name!r} is not a table name (lower-case letters, digits and _)", field="name")
        resolved = path.resolve()
        if not resolved.is_file():
            raise Unavailable(f"the data file of table {name} is missing")
        if _GLOB_CHARACTERS & set(str(resolved)):
            raise BadInput(f"the data file of table {name} has a glob character in its path", field="path")
        files[name] = str(resolved)
    return files


def _worker_environment(home: Path, threads: int = 1) -> dict[str, str]:
    # Nothing of the parent's environment (secrets, proxies, PYTHON*) reaches the worker.
    package_root = Path(__file__).resolve().parents[2]
    return {"HOME": str(home), "TMPDIR": str(home), "PYTHONPATH": str(package_root), "LC_ALL": "C.UTF-8",
            "POLARS_MAX_THREADS": str(threads)}


def _run_worker(request: bytes, work: Path, home: Path, seconds: float, threads: int = 1) -> dict[str, Any]:
    command = [sys.executable, "-s", "-m", "sovstack.data.engine"]
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=work, env=_worker_environment(home, threads), start_new_session=True)
    except OSError as exc:
        raise Unavailable("the query engine could not be started") from exc
    try:
        out, err = proc.communicate(request, timeout=seconds + GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise LimitExceeded(f"the query ran longer than {seconds:g} s and was stopped", field="sql") from None
    if proc.returncode != 0 or not out:
        log.warning("sandbox worker exited with %s: %s", proc.returncode, err.decode(errors="replace")[-2000:])
        raise Unavailable(f"the query engine stopped unexpectedly (exit code {proc.returncode})")
    reply: dict[str, Any] = orjson.loads(out)
    return reply


def _error(error: dict[str, str], limits: Limits) -> Exception:
    kind, message = error["kind"], error["message"]
    if kind == "timeout":
        return LimitExceeded(f"the query ran longer than {limits.seconds:g} s and was stopped", field="sql")
    if kind == "memory":
        return LimitExceeded(f"the query needed more than {limits.memory_mb} MB of memory and was stopped",
                             field="sql")
    if kind == "too_large":
        return LimitExceeded(message, field="sql")
    if kind == "refused":
        return Refused("the sandbox refused the query", reasons=[message], action="data.query")
    if kind == "bad_input":
        return BadInput(message, field="sql")
    return Unavailable(f"the query engine failed: {message}")


# --- the worker side: runs in its own process, imports only duckdb and orjson ---------------------


def _lock_down(tables: dict[str, str], limits: dict[str, Any], home: str) -> Any:
    """An in-memory DuckDB that can read only ``tables``' files, with its configuration locked."""
    import duckdb

    conn = duckdb.connect(":memory:")
    files = ", ".join(_quote(path) for path in tables.values())
    settings = [
        "SET temp_directory = ''",  # no spilling to disk; must precede enable_external_access
        f"SET home_directory = {_quote(home)}",  # the empty HOME, not the parent's (duckdb#26064)
        f"SET allowed_paths = [{files}]",
        "SET enable_external_access = false",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET allow_community_extensions = false",
        "SET allow_unsigned_extensions = false",
        "SET allow_persistent_secrets = false",
        "SET python_enable_replacements = false",
        f"SET memory_limit = '{int(limits['memory_mb'])}MB'",
        f"SET threads = {int(limits['threads'])}",
        "SET max_temp_directory_size = '0B'",
        f"SET max_execution_time = {max(1, int(limits['seconds'] * 1000))}",
    ]
    for statement in settings:
        conn.execute(statement)
    for name, path in tables.items():
        conn.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet({_quote(path)})')
    conn.execute("SET lock_configuration = true")
    locked = conn.execute("SELECT current_setting('lock_configuration'), current_setting('enable_external_access')")
    if locked.fetchone() != (True, False):
        raise RuntimeError("the configuration did not lock")
    return conn


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _run(conn: Any, sql: str, max_rows: int) -> dict[str, Any]:
    started = time.perf_counter()
    result = conn.execute(sql)
    columns = [column[0] for column in result.description or []]
    rows = result.fetchmany(max_rows + 1)
    seconds = time.perf_counter() - started
    return {"columns": columns, "rows": [[_plain(value) for value in row] for row in rows[:max_rows]],
            "truncated": len(rows) > max_rows, "seconds": seconds}


def _plain(value: Any) -> Any:
    """One DuckDB value as something orjson writes without loss of meaning."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if -(1 << 63) <= value < (1 << 64) else str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _classify(exc: Exception) -> dict[str, str]:
    import duckdb

    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, duckdb.InterruptException):
        return {"kind": "timeout", "message": message}
    if isinstance(exc, duckdb.OutOfMemoryException):
        return {"kind": "memory", "message": message}
    if isinstance(exc, duckdb.PermissionException) or "configuration has been locked" in message:
        return {"kind": "refused", "message": message}
    return {"kind": "bad_input", "message": message}


def _restrict_process() -> None:
    # No core dumps (they would hold data) and no file writes (DuckDB is told not to spill; this makes sure).
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _serve_private(request: dict[str, Any]) -> dict[str, Any]:
    import opendp.prelude  # noqa: F401  (loading OpenDP's library is process start, ~2 s, not the query)
    from opendp.mod import OpenDPException
    from polars.exceptions import PolarsError

    from sovstack.data import private

    started = time.perf_counter()
    try:
        return {**private.answer(request["private"], request["path"]), "seconds": time.perf_counter() - started}
    except OpenDPException as exc:  # what OpenDP cannot prove private; its words are about the query, not values
        detail = (str(exc).strip().splitlines() or ["OpenDP refused the query"])[-1].strip()
        return {"error": {"kind": "refused", "message": f"differential privacy cannot answer this query: {detail}"}}
    except PolarsError as exc:  # a type mismatch in WHERE; named by its kind only, never quoting a value
        return {"error": {"kind": "bad_input", "message": f"{type(exc).__name__}: the query does not fit the "
                                                          "columns' types (compare numbers with numbers, text "
                                                          "with quoted text)"}}


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Read one request, lock down, run it, write one reply."""
    import duckdb

    request = orjson.loads(stdin.read())
    _restrict_process()
    if "private" in request:
        stdout.write(orjson.dumps(_serve_private(request)))
        stdout.flush()
        return
    try:
        conn = _lock_down(request["tables"], request["limits"], request["home"])
    except (duckdb.Error, RuntimeError) as exc:
        reply: dict[str, Any] = {"error": {"kind": "lockdown", "message": str(exc).splitlines()[0]}}
    else:
        try:
            reply = _run(conn, request["sql"], int(request["limits"]["max_rows"]))
        except duckdb.Error as exc:
            reply = {"error": _classify(exc)}
    body = orjson.dumps(reply, default=str)
    if len(body) > MAX_REPLY_BYTES:
        body = orjson.dumps({"error": {"kind": "too_large", "message": (
            f"the result is larger than {MAX_REPLY_BYTES >> 20} MB; select fewer rows or columns")}})
    stdout.write(body)
    stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
