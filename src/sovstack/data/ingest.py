"""Turn an uploaded file into an immutable, content-addressed Parquet object, with its schema and statistics.

DuckDB does the reading and writing: it streams CSV, JSON Lines and Parquet to Parquet without holding
the file in memory, within a memory limit. The object is written beside its final place and moved
there only once complete, so a failed or cut-off upload leaves nothing behind and the current
version of the dataset untouched.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sovstack.core.errors import BadInput
from sovstack.data import csvfile

if TYPE_CHECKING:
    import duckdb

FORMATS = ("csv", "parquet", "jsonl")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
INGEST_MEMORY = "1GB"


@dataclass(frozen=True)
class Ingested:
    sha256: str
    relative_path: str  # under the objects folder
    parquet_bytes: int
    rows: int
    columns: list[dict[str, Any]]
    remarks: tuple[str, ...] = ()  # how the file was read, when not as plainly as it says (for the version's note)


def format_of(filename: str, declared: str | None = None) -> str:
    """The upload's format: as declared, else from the file name's suffix."""
    fmt = (declared or SUFFIXES.get(Path(filename).suffix.lower(), "")).lower()
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt or Path(filename).suffix!r}; one of {', '.join(FORMATS)} "
                       "(or name the file .csv, .parquet, .jsonl)", field="format")
    return fmt


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _reader(source: Path, fmt: str) -> str:
    if fmt == "jsonl":
        return f"read_json({_quote(source)}, format='newline_delimited')"
    return f"read_parquet({_quote(source)})"


def object_path(objects: Path, sha256: str) -> Path:
    return objects / "data" / sha256[:2] / f"{sha256}.parquet"


def staging(objects: Path) -> Path:
    """The folder uploads and conversions write to before their file is complete (on the objects' disk, so
    a finished file is moved into place, not copied)."""
    folder = objects / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def clean_staging(objects: Path, older_than: timedelta) -> int:
    """Remove the staging files not written to for ``older_than``: those of uploads killed half-way (a live
    upload or conversion writes to its file all along). Returns how many were removed."""
    folder = objects / "tmp"
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for entry in os.scandir(folder):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # another worker removed it first
            continue
    return removed


def _convert(objects: Path, write: Callable[[duckdb.DuckDBPyConnection, Path], str], statistics: bool) -> Ingested:
    """Let ``write`` produce a Parquet file beside its final place, then store it under its sha256.

    Whatever goes wrong, the half-written file is removed and nothing else changes. ``write`` returns
    "" or a remark on how it read its source.
    """
    import duckdb  # loaded at first use: a server process serving other modules need not carry DuckDB

    tmp = staging(objects) / f"{uuid.uuid4().hex}.parquet"
    con = duckdb.connect(":memory:", config={"memory_limit": INGEST_MEMORY, "threads": 2})
    try:
        remark = write(con, tmp)
        rows = int(con.execute(f"SELECT count(*) FROM read_parquet({_quote(tmp)})").fetchone()[0])  # type: ignore[index]
        if rows == 0:
            raise BadInput("the file has no rows", field="file")
        columns, skipped = _columns(con, tmp, statistics)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    sha = _sha256(tmp)
    final = object_path(objects, sha)
    final.parent.mkdir(parents=True, exist_ok=True)
    size = tmp.stat().st_size
    os.replace(tmp, final)  # the same content may already be there: replacing it changes nothing
    return Ingested(sha, str(final.relative_to(objects)), size, rows, columns,
                    tuple(said for said in (remark, skipped) if said))


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV upload: its delimiter (None: found from the header line), its encoding, and
    whether the steward accepts rows whose number of fields differs from the header's."""

    delimiter: str | None = None
    encoding: str = "utf-8"
    allow_ragged_rows: bool = False


def ingest(source: Path, fmt: str, objects: Path, *, statistics: bool, csv: CsvOptions | None = None) -> Ingested:
    """Convert ``source`` to Parquet under ``objects``; BadInput saying why when it cannot be read (in words
    about the file: never the server's paths or the SQL that read it)."""
    if not source.exists() or source.stat().st_size == 0:
        raise BadInput("the file is empty (0 bytes)", field="file")
    options = csv or CsvOptions()
    dialect = csvfile.dialect(source, options.delimiter, options.encoding) if fmt == "csv" else None

    def write(con: duckdb.DuckDBPyConnection, tmp: Path) -> str:
        import duckdb  # loaded at first use: a server process serving other modules need not carry DuckDB

        if dialect is not None:
            return csvfile.copy(source, dialect, tmp, con, allow_ragged_rows=options.allow_ragged_rows)
        try:
            con.execute(f"COPY (SELECT * FROM {_reader(source, fmt)}) TO {_quote(tmp)} {csvfile.PARQUET}")
        except duckdb.Error as exc:
            what = {"jsonl": "as JSON Lines (one JSON object per line)", "parquet": "as Parquet"}[fmt]
            raise BadInput(f"the file could not be read {what}", field="file",
                           reasons=[csvfile.first_line(exc, source, tmp)]) from exc
        return ""

    return _convert(objects, write, statistics)


TYPES = {"BIGINT", "INTEGER", "DOUBLE", "VARCHAR", "DATE", "TIMESTAMP", "BOOLEAN"}
DECIMAL = re.compile(r"^DECIMAL\((\d{1,2}),\s*(\d{1,2})\)$")


def check_type(type_: str) -> str:
    """A column type a steward may choose, normalised; BadInput otherwise."""
    wanted = type_.strip().upper()
    decimal = DECIMAL.match(wanted)
    if wanted in TYPES or (decimal and int(decimal.group(2)) <= int(decimal.group(1)) <= 38):
        return wanted
    raise BadInput(f"unsupported column type {type_!r}; one of {', '.join(sorted(TYPES))} or DECIMAL(p,s)",
                   field="type")


def retype(source: Path, column: str, type_: str, objects: Path, *, statistics: bool) -> Ingested:
    """A new Parquet object: ``source`` with ``column`` cast to ``type_``; BadInput naming the values that
    do not convert (so a retyping never silently turns data into NULLs)."""
    wanted = check_type(type_)
    quoted = '"' + column.replace('"', '""') + '"'

    def write(con: duckdb.DuckDBPyConnection, tmp: Path) -> str:
        bad = con.execute(f"SELECT count(*), any_value({quoted})::VARCHAR FROM read_parquet({_quote(source)}) "
                          f"WHERE {quoted} IS NOT NULL AND TRY_CAST({quoted} AS {wanted}) IS NULL").fetchone()
        if bad and bad[0]:
            raise BadInput(f"{bad[0]} values of {column} are not {wanted} (e.g. {bad[1]!r}); nothing changed",
                           field="type")
        con.execute(f"COPY (SELECT * REPLACE (CAST({quoted} AS {wanted}) AS {quoted}) FROM read_parquet("
                    f"{_quote(source)})) TO {_quote(tmp)} (FORMAT parquet, COMPRESSION zstd)")
        return ""

    return _convert(objects, write, statistics)


STATS_MAX_COLUMNS = 1000  # beyond this, a version has no statistics (and its note says why)
STATS_BATCH = 200  # columns per statistics query: one query over 10,000 columns ran out of memory


def _columns(con: duckdb.DuckDBPyConnection, parquet: Path, statistics: bool) -> tuple[list[dict[str, Any]], str]:
    """The file's columns, with statistics when asked for and the file is not too wide; and a remark if skipped."""
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_quote(parquet)})").fetchall()
    columns: list[dict[str, Any]] = [{"name": name, "type": type_, "description": ""}
                                     for name, type_, *_ in described]
    if not statistics:
        return columns, ""
    if len(columns) > STATS_MAX_COLUMNS:
        return columns, (f"no column statistics: {len(columns):,} columns, statistics are computed for files of "
                         f"up to {STATS_MAX_COLUMNS:,}")
    for start in range(0, len(columns), STATS_BATCH):
        _statistics(con, parquet, columns[start:start + STATS_BATCH])
    return columns, ""


def _statistics(con: duckdb.DuckDBPyConnection, parquet: Path, columns: list[dict[str, Any]]) -> None:
    # One columnar pass (SUMMARIZE also computes quantiles and costs ~8× as much).
    parts = [f'min("{q}")::VARCHAR, max("{q}")::VARCHAR, count("{q}"), approx_count_distinct("{q}")'
             for q in (c["name"].replace('"', '""') for c in columns)]
    row = con.execute(f"SELECT count(*), {', '.join(parts)} FROM read_parquet({_quote(parquet)})").fetchone()
    assert row is not None
    total = row[0] or 1
    for i, col in enumerate(columns):
        low, high, present, distinct = row[1 + 4 * i: 5 + 4 * i]
        col["stats"] = {"min": low, "max": high, "approx_distinct": distinct,
                        "null_percent": round(100 * (total - present) / total, 2)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def max_rows_per_entity(objects: Path, sha256: str, column: str) -> int:
    """The most rows any one value of ``column`` has in a version's file, computed once and kept beside it.

    Disclosure control uses it to bound how many entities a group covers and how much one entity can
    contribute, which spares most aggregate queries their per-entity pass. The version is immutable,
    so the figure never goes stale; a different entity column is another figure. 0 means no bound
    (the column has empty values).
    """
    path = object_path(objects, sha256)
    cache = path.with_name(f"{sha256}.rows-per-{hashlib.sha256(column.encode()).hexdigest()[:16]}")
    if cache.is_file():
        return int(cache.read_text())
    import duckdb  # loaded at first use: a server process serving other modules need not carry DuckDB

    quoted = '"' + column.replace('"', '""') + '"'
    with duckdb.connect(":memory:", config={"memory_limit": INGEST_MEMORY, "threads": 2}) as con:
        found = con.execute(f"SELECT coalesce(max(n), 0), coalesce(bool_or(e IS NULL), false) FROM "
                            f"(SELECT {quoted} AS e, count(*) AS n FROM read_parquet(?) GROUP BY {quoted})",
                            [str(path)]).fetchone()
    # Rows without an entity are not an entity the k rule counts: the bounds would not hold, so none is kept.
    most = int(found[0]) if found and not found[1] else 0
    staging = cache.with_name(f"{cache.name}.{uuid.uuid4().hex}")
    staging.write_text(str(most))
    os.replace(staging, cache)
    return most
