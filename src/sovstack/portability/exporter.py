"""Write a whole deployment as a BagIt bag: every table as JSON Lines, every object, settings, a
Frictionless descriptor — from one consistent snapshot of the database, in bounded memory."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, Table, func, select
from sqlalchemy.orm import Session

from sovstack import __version__
from sovstack.core import audit, sealing
from sovstack.core.base import rfc3339
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.errors import BadInput, Unavailable
from sovstack.core.settings import MACHINE_BOUND
from sovstack.portability import codec
from sovstack.portability.bag import BagWriter, remove, write_tar
from sovstack.portability.carried import (
    FORMAT_VERSION,
    ExportResult,
    Progress,
    Quiet,
    RowFilter,
    SecretsMode,
)
from sovstack.portability.sealbox import Sealer

BATCH = 5000
OBJECTS = "objects"
OBJECT_INDEX = "object-store.jsonl"
SECRETS_FILE = "secrets.sealed.jsonl"
SETTINGS_FILE = "settings.json"
DESCRIPTOR = "datapackage.json"
STAGING = "tmp"  # the object store's own staging folder: never exported
# A file named by its content: `<sha256>` or `<sha256>.<ext>` (not derived files beside it such as `.rows-per-…`).
CONTENT_ADDRESSED = re.compile(r"([0-9a-f]{64})(?:\.[A-Za-z0-9]+)?")


def _target(out: Path) -> tuple[Path, Path]:
    """(where the bag folder is built, the folder's final name inside a tar or on disk)."""
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise BadInput(f"{out} already exists: name a new folder or .tar file", field="out")
    if not out.parent.is_dir():
        raise BadInput(f"{out.parent} is not a folder", field="out")
    name = out.stem if out.suffix == ".tar" else out.name
    work = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    return work, work / name if out.suffix == ".tar" else work


def _snapshot(conn: Connection) -> None:
    """Make every read on ``conn`` see one state of the database, whatever is written meanwhile."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")  # pysqlite opens no transaction for reads on its own
        conn.exec_driver_sql("SELECT 1 FROM sqlite_master LIMIT 1")  # WAL: the snapshot starts at the first read


def export_deployment(db: Database, metadata: MetaData, out: Path, *, secrets: SecretsMode = "omit",
                      passphrase: str | None = None, who: Principal | None = None,
                      progress: Progress | None = None, rows: RowFilter | None = None) -> ExportResult:
    """Write the deployment to ``out`` (a new folder, or a file ending in .tar) as a BagIt bag."""
    if secrets == "encrypt" and not passphrase:
        raise BadInput("sealing credentials needs a passphrase (SOVSTACK_EXPORT_PASSPHRASE)", field="passphrase")
    progress = progress or Quiet()
    work, root = _target(out)
    result = ExportResult(path=out, secrets=secrets)
    try:
        bag = BagWriter(root)
        isolation = {"isolation_level": "REPEATABLE READ"} if db.dialect == "postgresql" else {}
        with db.engine.connect().execution_options(**isolation) as conn:
            _snapshot(conn)
            result.schema_revision = MigrationContext.configure(conn).get_current_revision() or ""
            _write_tables(conn, db, metadata, bag, result, passphrase if secrets == "encrypt" else None,
                          progress, rows)
            audit_head = _audit_head(conn)
        _write_objects(db.settings.home / OBJECTS, bag, result, progress)
        bag.write_bytes(SETTINGS_FILE, orjson.dumps(
            {k: v for k, v in db.settings.masked().items() if k not in MACHINE_BOUND},
            option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n")
        bag.write_bytes(DESCRIPTOR, _descriptor(metadata, result))
        bag.finish(_bag_info(db, result, audit_head))
        result.payload_bytes = int(bag.oxum().split(".")[0])
        if out.suffix == ".tar":
            partial = out.with_name(f".{out.name}.partial")
            write_tar(root, partial)
            partial.rename(out)
            remove(work)
        else:
            if out.exists():
                out.rmdir()  # it was empty
            work.rename(out)
    except BaseException:
        remove(work)
        remove(out.with_name(f".{out.name}.partial"))
        raise
    _record(db, who or Principal.system("cli"), result)
    return result


def _audit_head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(select(audit._head.c.last_seq, audit._head.c.last_hash).where(audit._head.c.id == 1)).one()
    return int(row[0]), str(row[1])


def _write_tables(conn: Connection, db: Database, metadata: MetaData, bag: BagWriter, result: ExportResult,
                  passphrase: str | None, progress: Progress, rows: RowFilter | None) -> None:
    tables = codec.exported_tables(metadata.sorted_tables)
    sealer = None
    if passphrase:
        sealed_file = bag.writer(SECRETS_FILE)
        sealer = Sealer(passphrase, sealed_file.write)
    counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}
    advance = progress.task("tables", sum(counts.values()))
    for table in tables:
        where = rows(table) if rows else None
        result.tables[table.name] = _write_table(conn, db, table, bag, result, sealer, advance, where)
    if sealer is not None:
        sealer.close()
        bag.add(SECRETS_FILE, sealed_file)


def _ordering(column: Column[Any], dialect: str) -> Any:
    # Text keys in byte order on every database (PostgreSQL's default collation is the locale's).
    if dialect == "postgresql" and codec.field_of(column).type == "string":
        return column.collate("C")
    return column


def _write_table(conn: Connection, db: Database, table: Table, bag: BagWriter, result: ExportResult,
                 sealer: Sealer | None, advance: Any, where: Any) -> int:
    columns = list(table.columns)
    names = [c.name for c in columns]
    encoders = [(i, f.encode) for i, c in enumerate(columns) if (f := codec.field_of(c)).encode is not None]
    secret = [(i, c, codec.secret_kind(c)) for i, c in enumerate(columns) if codec.secret_kind(c)]
    key_at = [names.index(c.name) for c in codec.primary_key(table)]
    query = select(*columns).order_by(*[_ordering(c, conn.dialect.name) for c in codec.primary_key(table)])
    if where is not None:
        query = query.where(where)
    writer = bag.writer(f"tables/{table.name}.jsonl")
    dumps, count = codec.dumps, 0
    writer.write(dumps(names) + b"\n")
    stream = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
    for partition in stream.partitions():
        lines = []
        for row in partition:
            values: Sequence[Any] = tuple(row)
            if encoders or secret:
                values = list(values)
                for i, encode in encoders:
                    values[i] = encode(values[i])
                for i, column, kind in secret:
                    _take_secret(db, table, column, kind, values, i, key_at, names, result, sealer)
            lines.append(dumps(values))
        lines.append(b"")
        writer.write(b"\n".join(lines))
        count += len(partition)
        advance(len(partition))
    bag.add(f"tables/{table.name}.jsonl", writer)
    return count


def _take_secret(db: Database, table: Table, column: Column[Any], kind: str | None, values: list[Any], i: int,
                 key_at: list[int], names: list[str], result: ExportResult, sealer: Sealer | None) -> None:
    """Blank a credential in the row; seal it (in plain text, for sealed columns) when a sealer is given."""
    value = values[i]
    values[i] = codec.blank(column)
    if value in (None, ""):
        return
    label = f"{table.name}.{column.name}"
    result.credentials[label] = result.credentials.get(label, 0) + 1
    if sealer is None:
        return
    if kind == "sealed":
        try:
            value = sealing.unseal(db.settings, column.info["sealed_for"], value, what=label)
        except Unavailable as exc:
            raise Unavailable(f"{exc.message}; export with --secrets omit, or with the secret that sealed it") \
                from exc
    sealer.add({"table": table.name, "key": {names[k]: values[k] for k in key_at}, "column": column.name,
                "value": value})


def _write_objects(folder: Path, bag: BagWriter, result: ExportResult, progress: Progress) -> None:
    """Copy the object store (its staging folder aside), each file checked against its content address."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] != STAGING) \
        if folder.is_dir() else []
    advance = progress.task("objects", sum(p.stat().st_size for p in files))
    index = bag.writer(OBJECT_INDEX)
    index.write(codec.dumps(["path", "sha256", "bytes"]) + b"\n")
    for path in files:
        relative = path.relative_to(folder).as_posix()
        sha, size = bag.copy_in(f"{OBJECTS}/{relative}", path)
        named = CONTENT_ADDRESSED.fullmatch(path.name)
        if named and named.group(1) != sha:
            raise Unavailable(f"object {relative} is damaged: its content's SHA-256 is {sha}")
        index.write(codec.dumps([relative, sha, size]) + b"\n")
        result.objects += 1
        result.object_bytes += size
        advance(size)
    bag.add(OBJECT_INDEX, index)


def _descriptor(metadata: MetaData, result: ExportResult) -> bytes:
    """The Frictionless Data Package: one JSON Lines resource per table, with its Table Schema."""
    tables = codec.exported_tables(metadata.sorted_tables)
    exported = {t.name for t in tables}
    resources = [{"name": t.name, "path": f"tables/{t.name}.jsonl", "format": "jsonl", "encoding": "utf-8",
                  "mediatype": "application/jsonl", "schema": codec.table_schema(t, exported)} for t in tables]
    resources.append({
        "name": "object-store", "path": OBJECT_INDEX, "format": "jsonl", "encoding": "utf-8",
        "mediatype": "application/jsonl",
        "description": "Every file of the object store, copied under objects/ at the same relative path.",
        "schema": {"fields": [{"name": "path", "type": "string", "constraints": {"required": True}},
                              {"name": "sha256", "type": "string", "constraints": {"required": True}},
                              {"name": "bytes", "type": "integer", "constraints": {"required": True}}],
                   "primaryKey": ["path"]}})
    package = {"name": "sovstack-deployment", "title": "A whole sovstack deployment",
               "profile": "data-package",
               "description": "Every table as JSON Lines in primary-key order; see docs/export-format.md of sovstack.",
               "sovstack": {"format": FORMAT_VERSION, "schema_revision": result.schema_revision,
                            "secrets": result.secrets},
               "resources": resources}
    return orjson.dumps(package, option=orjson.OPT_INDENT_2) + b"\n"


def _bag_info(db: Database, result: ExportResult, head: tuple[int, str]) -> list[tuple[str, str]]:
    now = datetime.now(UTC).replace(microsecond=0)
    info = [("Source-Organization", db.settings.deployment_name),
            ("Bagging-Date", now.date().isoformat()),
            ("Bag-Software-Agent", f"sovstack {__version__}"),
            ("External-Description", "A whole sovstack deployment: tables (JSON Lines), objects, settings; "
                                     "the format is described in docs/export-format.md of sovstack"),
            ("Sovstack-Export-Format", str(FORMAT_VERSION)),
            ("Sovstack-Version", __version__),
            ("Sovstack-Schema-Revision", result.schema_revision),
            ("Sovstack-Created", rfc3339(now.replace(tzinfo=None)) or ""),
            ("Sovstack-Secrets", result.secrets),
            ("Sovstack-Audit-Head", f"{head[0]} {head[1]}"),
            ("Sovstack-Objects", f"{result.objects} {result.object_bytes}")]
    info += [("Sovstack-Table-Rows", f"{name} {n}") for name, n in result.tables.items()]
    info += [("Sovstack-Credentials", f"{label} {n}") for label, n in sorted(result.credentials.items())]
    return info


def _record(db: Database, who: Principal, result: ExportResult) -> None:
    """The export in the source's own chain — after the snapshot, so the bag is what it describes."""
    with db.session() as session, unit_of_work(session, who):
        _audit(session, who, result)


def _audit(session: Session, who: Principal, result: ExportResult) -> None:
    audit.record(session, actor=who.actor, action="portability.export", target=result.path.name,
                 detail={"rows": result.rows, "tables": len(result.tables), "objects": result.objects,
                         "object_bytes": result.object_bytes, "secrets": result.secrets,
                         "schema_revision": result.schema_revision})
