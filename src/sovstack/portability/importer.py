"""Load a bag into an empty deployment: the whole bag verified first, then one transaction.

Order of work, so that a bad bag or a killed process leaves the target as it was:
1. the bag's structure and tag files (bag.py), its format and schema revision, the target empty;
2. every table file's checksum and the audit chain; the sealed credentials opened;
3. the objects copied into the object store's staging folder, each checked as it is copied;
4. one transaction: rows inserted in batches, parents first; sequences moved past the ids;
   modules rebuild what they derive (search indexes); the objects moved into place; commit.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pluggy
from sqlalchemy import Connection, MetaData, Table, delete, func, literal, select, text
from sqlalchemy.orm import Session

from sovstack.core import audit, sealing
from sovstack.core.db import Database
from sovstack.core.errors import BadDocument, BadInput, Conflict
from sovstack.core.settings import MACHINE_BOUND
from sovstack.portability import codec, sealbox
from sovstack.portability.bag import Bag
from sovstack.portability.carried import FORMAT_VERSION, ImportResult, Progress, Quiet
from sovstack.portability.exporter import (
    DESCRIPTOR,
    OBJECT_INDEX,
    OBJECTS,
    SECRETS_FILE,
    SETTINGS_FILE,
    STAGING,
)

BATCH = 5000
Secrets = dict[tuple[str, bytes], dict[str, Any]]  # (table, canonical key) → {column: value}


def import_deployment(db: Database, metadata: MetaData, path: Path, *, passphrase: Callable[[], str] | None = None,
                      hooks: pluggy.PluginManager | None = None, progress: Progress | None = None) -> ImportResult:
    """Load the bag at ``path`` (folder or .tar) into ``db``'s deployment, which must hold nothing yet."""
    progress = progress or Quiet()
    bag = Bag(path)
    try:
        return _import(db, metadata, bag, passphrase, hooks, progress)
    finally:
        bag.close()


def _import(db: Database, metadata: MetaData, bag: Bag, passphrase: Callable[[], str] | None,
            hooks: pluggy.PluginManager | None, progress: Progress) -> ImportResult:
    result = ImportResult(secrets="encrypt" if bag.value("Sovstack-Secrets") == "encrypt" else "omit")
    result.schema_revision = _check_versions(bag, db)
    if result.secrets == "omit":  # what the source left out, as it counted it
        result.credentials = {label: int(n) for label, _sep, n in
                              (v.partition(" ") for v in bag.values("Sovstack-Credentials")) if n.isdigit()}
    tables = _tables(bag, metadata)
    _check_empty(db, tables)
    totals = _totals(bag)
    _verify_payload(bag, tables, progress)
    secrets: Secrets = {}
    if result.secrets == "encrypt":
        secrets = _open_secrets(bag, passphrase)
    result.settings_differ = _settings_differ(bag, db)
    staging = db.settings.home / OBJECTS / STAGING / f"import-{uuid.uuid4().hex}"
    try:
        staged = _stage_objects(bag, staging, result, progress)
        bag.check_oxum()
        _load(db, metadata, bag, tables, totals, secrets, (staging, staged), result, hooks, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _check_versions(bag: Bag, db: Database) -> str:
    """The bag's schema revision, which must be the one this sovstack's migrations end at."""
    fmt = bag.value("Sovstack-Export-Format")
    if fmt is None or not fmt.isdigit():
        raise BadDocument("bag-info.txt", "no Sovstack-Export-Format: not a sovstack export")
    if int(fmt) > FORMAT_VERSION:
        raise BadInput(f"the bag is in export format {fmt}, newer than this sovstack reads ({FORMAT_VERSION}): "
                       "upgrade sovstack first")
    revision = bag.value("Sovstack-Schema-Revision") or ""
    db.ping()
    head = db.head_revision()
    if revision != head:
        if revision not in db.revisions():
            raise BadInput(f"the bag's schema revision {revision or '(none)'} is newer than this sovstack's "
                           f"({head}) or unknown to it: upgrade sovstack first")
        raise BadInput(f"the bag's schema revision {revision} is older than this sovstack's ({head}): import it "
                       f"with the sovstack version that made it ({bag.value('Sovstack-Version')}), then upgrade "
                       "(docs/user-guide/portability.md)")
    if db.current_revision() != head:
        db.upgrade()  # a new deployment: its tables first (an empty one at an older revision is brought up too)
    return revision


def _tables(bag: Bag, metadata: MetaData) -> list[Table]:
    """The target's tables in load order, each matched to the bag's resource of the same name and columns."""
    with bag.open_verified(DESCRIPTOR) as fh:
        try:
            package = orjson.loads(fh.read())
            resources = {r["name"]: r for r in package["resources"]}
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise BadDocument(f"data/{DESCRIPTOR}", f"not a data package descriptor ({exc})") from exc
    tables = codec.exported_tables(metadata.sorted_tables)
    known = {t.name for t in tables}
    unknown = sorted(n for n in resources if n != "object-store" and n not in known)
    if unknown:
        raise BadInput(f"the bag has tables no installed module defines: {', '.join(unknown)} (install the "
                       "plugins the source had)")
    for table in tables:
        if table.name not in resources:
            continue
        theirs = [f["name"] for f in resources[table.name]["schema"]["fields"]]
        if theirs != [c.name for c in table.columns]:
            raise BadDocument(f"data/{DESCRIPTOR}", f"table {table.name} has columns {theirs}, not this "
                              "sovstack's")
    return [t for t in tables if t.name in resources]


def _check_empty(db: Database, tables: list[Table]) -> None:
    with db.engine.connect() as conn:
        for table in tables:
            if table.info.get("singleton"):
                continue
            if conn.execute(select(literal(1)).select_from(table).limit(1)).first() is not None:
                raise Conflict(f"this deployment is not empty (table {table.name} has rows): import only into "
                               "a new deployment (`sovstack --home NEW_FOLDER import …`)")


def _totals(bag: Bag) -> dict[str, int]:
    totals = {}
    for value in bag.values("Sovstack-Table-Rows"):
        name, _sep, count = value.partition(" ")
        totals[name] = int(count) if count.isdigit() else 0
    return totals


def _lines(fh: Any, name: str) -> Iterator[list[Any]]:
    for number, line in enumerate(fh, 1):
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadDocument(name, f"line {number} is not JSON ({exc})") from exc


def _verify_payload(bag: Bag, tables: list[Table], progress: Progress) -> None:
    """Every payload file but the objects, by its checksum; the audit chain, link by link."""
    names = [f"tables/{t.name}.jsonl" for t in tables]
    rest = [n for n in (SETTINGS_FILE, OBJECT_INDEX, SECRETS_FILE) if bag.has(n)]
    advance = progress.task("verify", sum(bag.size(n) for n in [*names, *rest]))
    for name in [*names, *rest]:
        if name == "tables/audit_events.jsonl":
            _verify_chain(bag)
        else:
            bag.verify(name)
        advance(bag.size(name))


def _verify_chain(bag: Bag) -> None:
    """The bag's audit chain holds from the first event to the head the bag records."""
    name = "data/tables/audit_events.jsonl"
    with bag.open_verified("tables/audit_head.jsonl") as fh:
        rows = list(_lines(fh, "data/tables/audit_head.jsonl"))
    head = dict(zip(rows[0], rows[1], strict=True)) if len(rows) == 2 else {"last_seq": 0, "last_hash": audit.GENESIS}
    prev, expected = audit.GENESIS, 1
    with bag.open_verified("tables/audit_events.jsonl") as fh:
        lines = _lines(fh, name)
        columns = next(lines, None)
        at = {c: i for i, c in enumerate(columns or [])}
        fields = ["seq", "at", "actor", "action", "target", "outcome", "reasons", "detail"]
        for row in lines:
            seq, values = row[at["seq"]], [row[at[c]] for c in fields]
            if seq != expected or row[at["prev_hash"]] != prev or audit.digest(prev, *values) != row[at["hash"]]:
                raise BadDocument(name, f"the audit chain breaks at event {seq}: the bag was altered")
            prev, expected = row[at["hash"]], expected + 1
    if head["last_seq"] != expected - 1 or head["last_hash"] != prev:
        raise BadDocument("data/tables/audit_head.jsonl", f"the chain ends at event {expected - 1}, not where "
                          "the head says: the bag was altered")


def _open_secrets(bag: Bag, passphrase: Callable[[], str] | None) -> Secrets:
    if not bag.has(SECRETS_FILE):
        raise BadDocument(f"data/{SECRETS_FILE}", "missing: the bag says its credentials are sealed")
    if passphrase is None:
        raise BadInput("the bag's credentials are sealed: a passphrase is needed", field="passphrase")
    phrase = passphrase()
    secrets: Secrets = {}
    with bag.open_verified(SECRETS_FILE) as fh:
        for record in sealbox.open_sealed(phrase, fh, f"data/{SECRETS_FILE}"):
            key = (record["table"], codec.dumps(record["key"]))
            secrets.setdefault(key, {})[record["column"]] = record["value"]
    return secrets


def _settings_differ(bag: Bag, db: Database) -> dict[str, tuple[Any, Any]]:
    if not bag.has(SETTINGS_FILE):
        return {}
    with bag.open_verified(SETTINGS_FILE) as fh:
        theirs = orjson.loads(fh.read())
    ours = {k: v for k, v in db.settings.masked().items() if k not in MACHINE_BOUND}
    return {k: (theirs[k], ours.get(k)) for k in sorted(theirs) if k in ours and theirs[k] != ours[k]}


def _stage_objects(bag: Bag, staging: Path, result: ImportResult, progress: Progress) -> list[str]:
    """Copy every object into ``staging``, each checked against the manifest on the way."""
    names = bag.payload(OBJECTS)
    advance = progress.task("objects", sum(bag.size(f"{OBJECTS}/{n}") for n in names))
    for name in names:
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        size = bag.copy_verified(f"{OBJECTS}/{name}", target)
        result.objects += 1
        result.object_bytes += size
        advance(size)
    return names


def _load(db: Database, metadata: MetaData, bag: Bag, tables: list[Table], totals: dict[str, int],
          secrets: Secrets, staged: tuple[Path, list[str]], result: ImportResult,
          hooks: pluggy.PluginManager | None, progress: Progress) -> None:
    advance = progress.task("load", sum(totals.get(t.name, 0) for t in tables))
    placed: list[Path] = []
    with db.engine.connect() as conn:
        try:
            with conn.begin():
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
                for table in reversed(metadata.sorted_tables):  # what migrations or the runtime left there
                    if table.info.get("singleton") or table.info.get("runtime"):
                        conn.execute(delete(table))
                for table in tables:
                    result.tables[table.name] = _load_table(conn, db, bag, table, secrets, result, advance)
                if conn.dialect.name == "postgresql":
                    _move_sequences(conn, tables)
                if hooks is not None:
                    with Session(bind=conn) as session:
                        hooks.hook.sovstack_after_import(session=session)
                        session.flush()
                placed = _place(*staged, db.settings.home / OBJECTS)
        except BaseException:
            for path in placed:
                path.unlink(missing_ok=True)
            raise


class _Insert:
    """Rows of one table inserted straight through the driver — executemany, or COPY on PostgreSQL — each
    value put into the form the column's SQLAlchemy type gives the driver: SQLAlchemy's per-row machinery
    cost more than the SQL."""

    def __init__(self, conn: Connection, table: Table) -> None:
        dialect = conn.dialect
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        names = ", ".join(quote(c.name) for c in table.columns)
        self.sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({', '.join([mark] * len(table.columns))})"
        self.copy = f"COPY {quote(table.name)} ({names}) FROM STDIN" if dialect.name == "postgresql" else ""
        self.process = [(i, p) for i, c in enumerate(table.columns)
                        if (p := c.type.dialect_impl(dialect).bind_processor(dialect)) is not None]
        self.conn = conn

    def __call__(self, rows: list[list[Any]]) -> None:
        for row in rows:
            for i, process in self.process:
                row[i] = process(row[i])
        if not self.copy:
            self.conn.exec_driver_sql(self.sql, [tuple(r) for r in rows])
            return
        driver: Any = self.conn.connection.dbapi_connection  # psycopg's, inside the same transaction
        with driver.cursor() as cursor, cursor.copy(self.copy) as copy:
            for row in rows:
                copy.write_row(row)


def _load_table(conn: Connection, db: Database, bag: Bag, table: Table, secrets: Secrets, result: ImportResult,
                advance: Callable[[float], None]) -> int:
    name = f"data/tables/{table.name}.jsonl"
    columns = [c.name for c in table.columns]
    count = 0
    with bag.open_verified(f"tables/{table.name}.jsonl") as fh:
        lines = _lines(fh, name)
        header = next(lines, None)
        if header != columns:
            raise BadDocument(name, f"its first line names the columns {header}, not {columns}")
        decode = [(columns.index(c), f) for c, f in codec.decoders(table, columns)]
        key_at = [columns.index(c.name) for c in codec.primary_key(table)]
        secret = {c.name: (columns.index(c.name), c) for c in table.columns if codec.secret_kind(c)}
        insert = _Insert(conn, table)
        batch: list[list[Any]] = []
        width = len(columns)
        for row in lines:
            if len(row) != width:
                raise BadDocument(name, f"row {count + 1} has {len(row)} values, not {width}")
            for i, fn in decode:
                row[i] = fn(row[i])
            if secret and secrets:
                _restore(db, table, row, key_at, columns, secret, secrets, result)
            batch.append(row)
            count += 1
            if len(batch) == BATCH:
                insert(batch)
                advance(len(batch))
                batch = []
        if batch:
            insert(batch)
            advance(len(batch))
    return count


def _restore(db: Database, table: Table, row: list[Any], key_at: list[int], columns: list[str],
             secret: dict[str, tuple[int, Any]], secrets: Secrets, result: ImportResult) -> None:
    """Put a row's sealed credentials back; a value sealed for a purpose is sealed again with this deployment's key."""
    found = secrets.get((table.name, codec.dumps({columns[k]: row[k] for k in key_at})))
    if not found:
        return
    for column, value in found.items():
        if column not in secret:
            continue
        i, col = secret[column]
        if codec.secret_kind(col) == "sealed":
            value = sealing.seal(db.settings, col.info["sealed_for"], value)
        row[i] = value
        label = f"{table.name}.{column}"
        result.credentials[label] = result.credentials.get(label, 0) + 1


def _move_sequences(conn: Connection, tables: list[Table]) -> None:
    """PostgreSQL: the next id of each table past the ids just loaded."""
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        highest = conn.execute(select(func.max(column))).scalar()
        conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, :c), :v, :called)"),
                     {"t": table.name, "c": column.name, "v": highest or 1, "called": highest is not None})


def _place(staging: Path, staged: list[str], objects: Path) -> list[Path]:
    """Move the staged objects into the store (renames on one disk); the ones that were not there before."""
    placed = []
    for name in staged:
        target = objects / name
        if target.exists():
            continue  # content-addressed: the same name holds the same bytes
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / name).rename(target)
        placed.append(target)
    return placed
