"""The data commons' rules: who may publish, see, request, grant, download — checked here, at every use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from sovstack.core import audit, identity, policy
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused
from sovstack.core.settings import Settings
from sovstack.data import ingest, search
from sovstack.data.schemas import DatasetCreate, DatasetFields, DatasetPublic, VersionPublic
from sovstack.data.tables import Dataset, DatasetVersion

STEWARDS = ("steward", "org_admin")


@dataclass(frozen=True)
class Site:
    """This deployment as the party that stores and processes the data (for policy decisions)."""

    name: str
    jurisdiction: str
    parent_jurisdiction: str


def site(settings: Settings) -> Site:
    return Site("this deployment", settings.home_jurisdiction, settings.home_jurisdiction)


def get_dataset(session: Session, name: str) -> Dataset:
    found = session.scalar(select(Dataset).where(Dataset.name == name))
    if found is None:
        raise NotFound(f"no dataset {name!r}", field="dataset")
    return found


def all_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).options(selectinload(Dataset.versions)).order_by(Dataset.name)))


def visible(dataset: Dataset, who: Principal | None) -> bool:
    """Open datasets' entries are public (if the operator allows anonymous browsing); others are for members."""
    return dataset.classification == "open" or who is not None


def get_visible(session: Session, who: Principal | None, name: str) -> Dataset:
    dataset = get_dataset(session, name)
    if not visible(dataset, who):
        raise NotFound(f"no dataset {name!r}", field="dataset")  # not even its existence is disclosed
    return dataset


def public(dataset: Dataset) -> DatasetPublic:
    current = current_version(dataset)
    return DatasetPublic(
        id=dataset.id, name=dataset.name, title=dataset.title, description=dataset.description,
        publisher=dataset.publisher.name, publisher_id=dataset.publisher_id, licence=dataset.licence,
        classification=dataset.classification, storage_jurisdiction=dataset.storage_jurisdiction,
        languages=list(dataset.languages), keywords=list(dataset.keywords), spatial=dataset.spatial,
        temporal_start=dataset.temporal_start, temporal_end=dataset.temporal_end, provenance=dataset.provenance,
        entity_column=dataset.entity_column, k_threshold=dataset.k_threshold,
        dp_epsilon_cap=dataset.dp_epsilon_cap, dp_max_rows_per_entity=dataset.dp_max_rows_per_entity,
        dp_delta_cap=dataset.dp_delta_cap,
        dp_bounds={k: list(v) for k, v in dataset.dp_bounds.items()}, dp_keys=dict(dataset.dp_keys),
        current_version=dataset.current_version, rows=current.rows if current else None,
        format="parquet" if current else None, columns=list(current.columns) if current else [],
        created_at=dataset.created_at, updated_at=dataset.updated_at)


def version_public(v: DatasetVersion) -> VersionPublic:
    return VersionPublic(number=v.number, sha256=v.sha256, source_format=v.source_format,
                         source_bytes=v.source_bytes, parquet_bytes=v.parquet_bytes, rows=v.rows,
                         columns=list(v.columns), note=v.note, created_by=v.created_by, created_at=v.created_at)


def current_version(dataset: Dataset) -> DatasetVersion | None:
    return next((v for v in dataset.versions if v.number == dataset.current_version), None)


def _check_storage(session: Session, settings: Settings, fields: DatasetFields, target: str) -> None:
    """The policy must allow data of this classification to be stored where the steward says it is."""
    doc = policy.current(session, settings.home_jurisdiction)
    decision = policy.decide(doc, None, "process", policy.Resource(
        classification=fields.classification, hosting_jurisdiction=fields.storage_jurisdiction,
        party=site(settings)))
    if not decision.allowed:
        raise Refused(f"{fields.classification} data may not be stored in {fields.storage_jurisdiction}: "
                      f"{decision.reasons[0]}", action="data.dataset.store", target=target,
                      reasons=decision.reasons)


def create_dataset(session: Session, who: Principal, settings: Settings, data: DatasetCreate) -> Dataset:
    org = identity.get_organisation(session, data.publisher_id)
    target = f"dataset:{data.name}"
    who.require_role(org.id, *STEWARDS, action="data.dataset.create", target=target)
    if session.scalar(select(Dataset.id).where(Dataset.name == data.name)) is not None:
        raise Conflict(f"a dataset named {data.name!r} exists", field="name")
    _check_storage(session, settings, data, target)
    dataset = Dataset(name=data.name, publisher_id=org.id, **_columns_of(data))
    session.add(dataset)
    session.flush()
    session.refresh(dataset)
    search.index(session, dataset)
    audit.record(session, actor=who.actor, action="data.dataset.create", target=target,
                 detail={"publisher": org.name, "classification": data.classification,
                         "storage_jurisdiction": data.storage_jurisdiction, "licence": data.licence})
    return dataset


def update_dataset(session: Session, who: Principal, settings: Settings, name: str, data: DatasetFields) -> Dataset:
    dataset = get_dataset(session, name)
    target = f"dataset:{name}"
    who.require_role(dataset.publisher_id, *STEWARDS, action="data.dataset.update", target=target)
    _check_storage(session, settings, data, target)
    current = current_version(dataset)
    if current is not None:
        _check_columns(data.entity_column, [*data.dp_bounds, *data.dp_keys], current.columns)
        if data.entity_column and data.classification == "sensitive":
            _check_rows_per_entity(settings, data.entity_column, data.dp_max_rows_per_entity, current.sha256)
    before = {k: getattr(dataset, k) for k in ("classification", "storage_jurisdiction", "licence")}
    for key, value in _columns_of(data).items():
        setattr(dataset, key, value)
    dataset.updated_at = utcnow()
    search.index(session, dataset)
    audit.record(session, actor=who.actor, action="data.dataset.update", target=target,
                 detail={"before": before, "after": {k: getattr(dataset, k) for k in before}})
    return dataset


def publish_version(session: Session, who: Principal, settings: Settings, name: str, source: Path, fmt: str, *,
                    note: str = "", csv: ingest.CsvOptions | None = None,
                    allow_schema_change: bool = False) -> DatasetVersion:
    """Add an immutable version from ``source`` and make it current; the previous one stays as it was."""
    dataset = get_dataset(session, name)
    target = f"dataset:{name}"
    who.require_role(dataset.publisher_id, *STEWARDS, action="data.version.publish", target=target)
    clean_staging(settings)
    done = ingest.ingest(source, fmt, settings.home / "objects", statistics=dataset.classification == "open",
                         csv=csv)
    previous = current_version(dataset)
    if previous is not None and not allow_schema_change:
        _same_schema(previous.columns, done.columns)
    columns = _carry_descriptions(previous.columns if previous else [], done.columns)
    if dataset.entity_column and dataset.entity_column not in {c["name"] for c in columns}:
        raise BadInput(f"the entity column {dataset.entity_column!r} is not in the file", field="file",
                       reasons=[f"columns: {', '.join(str(c['name']) for c in columns)}"])
    _check_columns(dataset.entity_column, [*dataset.dp_bounds, *dataset.dp_keys], columns, "file")
    if dataset.entity_column and dataset.classification == "sensitive":
        _check_rows_per_entity(settings, dataset.entity_column, dataset.dp_max_rows_per_entity, done.sha256,
                               "file")
    number = max((v.number for v in dataset.versions), default=0) + 1
    version = DatasetVersion(dataset_id=dataset.id, number=number, sha256=done.sha256, source_format=fmt,
                             source_bytes=source.stat().st_size, parquet_bytes=done.parquet_bytes, rows=done.rows,
                             columns=columns, note=version_note(note, done.remarks), created_by=who.actor)
    session.add(version)
    dataset.current_version, dataset.updated_at = number, utcnow()
    session.flush()
    search.index(session, dataset)
    audit.record(session, actor=who.actor, action="data.version.publish", target=target,
                 detail={"version": number, "sha256": done.sha256, "rows": done.rows, "format": fmt})
    return version


def clean_staging(settings: Settings) -> int:
    """Remove what killed uploads left in the staging folder (at start, and on each upload)."""
    return ingest.clean_staging(settings.home / "objects", timedelta(hours=settings.data_staging_max_age_hours))


NOTE_MAX = 500  # the column's length


def version_note(note: str, remarks: tuple[str, ...]) -> str:
    """The steward's note, then how the file was read where that was not plain; the remarks are kept whole."""
    said = " ".join(f"[{remark}]" for remark in remarks)
    if not said:
        return note[:NOTE_MAX]
    room = NOTE_MAX - len(said) - 1
    return (f"{note[:room]} {said}" if note and room > 0 else said)[:NOTE_MAX]


def _columns_of(data: DatasetFields) -> dict[str, object]:
    """The fields as table values (bounds as JSON lists)."""
    values = data.model_dump(exclude={"name", "publisher_id"})
    values["dp_bounds"] = {column: list(pair) for column, pair in data.dp_bounds.items()}
    return values


def _check_columns(entity: str, declared: list[str], columns: list[dict[str, object]], field: str = "") -> None:
    """Every column the steward names (the entity, bounds, public keys) must be a column of the data."""
    names = {str(c["name"]) for c in columns}
    named = [("entity_column", entity)] if entity else []
    missing = [(where, column) for where, column in [*named, *(("dp_bounds or dp_keys", c) for c in declared)]
               if column not in names]
    if missing:
        where, column = missing[0]
        raise BadInput(f"{where}: {column!r} is not a column of the data", field=field or where.split()[0],
                       reasons=[f"columns: {', '.join(sorted(names))}"])


def _check_rows_per_entity(settings: Settings, entity: str, declared: int, sha256: str, field: str = "") -> None:
    most = ingest.max_rows_per_entity(settings.home / "objects", sha256, entity)
    if most == 0:
        raise BadInput(f"some rows have no {entity}: every row of sensitive data must name its entity",
                       field=field or "entity_column")
    if most > declared:
        raise BadInput(f"an entity has {most} rows but dp_max_rows_per_entity is {declared}: raise the bound (more "
                       "noise) or publish one row per entity per period", field=field or "dp_max_rows_per_entity")


def _same_schema(before: list[dict[str, object]], after: list[dict[str, object]]) -> None:
    old = [(c["name"], c["type"]) for c in before]
    new = [(c["name"], c["type"]) for c in after]
    if old != new:
        gone = [f"{n} {t}" for n, t in old if (n, t) not in new]
        added = [f"{n} {t}" for n, t in new if (n, t) not in old]
        raise BadInput("the file's columns differ from the current version's; the current version stays. "
                       "Publish with allow_schema_change to accept the new schema", field="file",
                       reasons=[f"removed or changed: {', '.join(gone) or '-'}", f"new: {', '.join(added) or '-'}"])


def _carry_descriptions(before: list[dict[str, object]], after: list[dict[str, object]]) -> list[dict[str, object]]:
    described = {c["name"]: c.get("description", "") for c in before}
    return [{**c, "description": c.get("description") or described.get(c["name"], "")} for c in after]


def describe_column(session: Session, who: Principal, name: str, column: str, description: str) -> Dataset:
    """Describe a column of the current version (descriptions carry over to later versions)."""
    dataset = get_dataset(session, name)
    who.require_role(dataset.publisher_id, *STEWARDS, action="data.schema.edit", target=f"dataset:{name}")
    current = current_version(dataset)
    if current is None or column not in {c["name"] for c in current.columns}:
        raise NotFound(f"no column {column!r} in the current version of {name}", field="column")
    current.columns = [{**c, "description": description} if c["name"] == column else c for c in current.columns]
    search.index(session, dataset)
    audit.record(session, actor=who.actor, action="data.schema.edit", target=f"dataset:{name}",
                 detail={"column": column})
    return dataset


def retype_column(session: Session, who: Principal, settings: Settings, name: str, column: str,
                  type_: str) -> DatasetVersion:
    """Correct an inferred column type: a new version, cast from the current one (which stays as it was)."""
    dataset = get_dataset(session, name)
    target = f"dataset:{name}"
    who.require_role(dataset.publisher_id, *STEWARDS, action="data.schema.retype", target=target)
    current = current_version(dataset)
    if current is None or column not in {c["name"] for c in current.columns}:
        raise NotFound(f"no column {column!r} in the current version of {name}", field="column")
    objects = settings.home / "objects"
    done = ingest.retype(ingest.object_path(objects, current.sha256), column, type_, objects,
                         statistics=dataset.classification == "open")
    number = max(v.number for v in dataset.versions) + 1
    version = DatasetVersion(dataset_id=dataset.id, number=number, sha256=done.sha256, source_format="parquet",
                             source_bytes=current.parquet_bytes, parquet_bytes=done.parquet_bytes, rows=done.rows,
                             columns=_carry_descriptions(current.columns, done.columns),
                             note=version_note(f"{column} as {ingest.check_type(type_)} (from version "
                                               f"{current.number})", done.remarks),
                             created_by=who.actor)
    session.add(version)
    dataset.current_version, dataset.updated_at = number, utcnow()
    session.flush()
    search.index(session, dataset)
    audit.record(session, actor=who.actor, action="data.schema.retype", target=target,
                 detail={"column": column, "type": ingest.check_type(type_), "version": number,
                         "from_version": current.number, "sha256": done.sha256})
    return version


def versions(session: Session, who: Principal | None, name: str) -> list[DatasetVersion]:
    return list(get_visible(session, who, name).versions)


def request_sla(settings: Settings) -> timedelta:
    return timedelta(hours=settings.data_request_sla_hours)
