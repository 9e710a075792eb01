"""Full-text search over the catalogue, with facets: SQLite FTS5, or PostgreSQL's text search."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, text
from sqlalchemy.orm import Session, selectinload

from sovstack.core.tables import Organisation
from sovstack.data.tables import Dataset, DatasetVersion

FACETS = ("publisher", "classification", "language", "licence", "format")


@dataclass
class Filters:
    publisher: str | None = None
    classification: str | None = None
    language: str | None = None
    licence: str | None = None
    format: str | None = None


@dataclass
class Found:
    total: int
    datasets: list[Dataset]
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


def _body(dataset: Dataset) -> str:
    columns = next((v.columns for v in dataset.versions if v.number == dataset.current_version), [])
    parts = [dataset.name.replace("_", " "), dataset.title, dataset.description, " ".join(dataset.keywords),
             dataset.publisher.name if dataset.publisher else "", " ".join(dataset.languages), dataset.spatial,
             " ".join(f"{c['name']} {c.get('description', '')}" for c in columns)]
    return "\n".join(p for p in parts if p)


def index(session: Session, dataset: Dataset) -> None:
    """Bring the dataset's search entry up to date (call in the changing transaction)."""
    session.flush()
    session.refresh(dataset, ["publisher", "versions"])
    dataset.search_text = _body(dataset)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DELETE FROM data_search WHERE rowid = :id"), {"id": dataset.id})
        session.execute(text("INSERT INTO data_search (rowid, body) VALUES (:id, :body)"),
                        {"id": dataset.id, "body": dataset.search_text})


def _matching_ids(session: Session, q: str) -> list[int] | None:
    """Dataset ids matching ``q``, best first; None when ``q`` has no words (no text filter)."""
    words = re.findall(r"\w+", q)
    if not words:
        return None
    if session.get_bind().dialect.name == "sqlite":
        match = " ".join(f'"{w}"*' for w in words)  # every word, as a prefix; quotes keep FTS syntax out
        rows = session.execute(text("SELECT rowid FROM data_search WHERE data_search MATCH :m ORDER BY rank"),
                               {"m": match})
        return [r[0] for r in rows]
    vector = func.to_tsvector(text("'simple'"), Dataset.search_text)
    query = func.to_tsquery(text("'simple'"), " & ".join(f"{w}:*" for w in words))  # \w+ only: no tsquery syntax
    rows = session.execute(select(Dataset.id).where(vector.op("@@")(query))
                           .order_by(func.ts_rank(vector, query).desc(), Dataset.id))
    return [r[0] for r in rows]


def _conditions(session: Session, anonymous: bool, f: Filters) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if anonymous:
        cond.append(Dataset.classification == "open")
    if f.classification:
        cond.append(Dataset.classification == f.classification)
    if f.licence:
        cond.append(func.lower(Dataset.licence) == f.licence.lower())
    if f.publisher:
        cond.append(Dataset.publisher_id.in_(select(Organisation.id).where(Organisation.name == f.publisher)))
    if f.format:
        cond.append(Dataset.id.in_(select(DatasetVersion.dataset_id).where(
            DatasetVersion.number == Dataset.current_version, DatasetVersion.source_format == f.format)))
    return cond


def find(session: Session, q: str, filters: Filters, *, anonymous: bool, limit: int = 20, offset: int = 0) -> Found:
    """A page of matching datasets (best first when searching, else newest first) and facet counts."""
    ids = _matching_ids(session, q)
    cond = _conditions(session, anonymous, filters)
    if ids is not None:
        cond.append(Dataset.id.in_(ids))
    rows = session.execute(select(Dataset.id, Dataset.languages, Dataset.classification, Dataset.licence,
                                  Organisation.name, DatasetVersion.source_format)
                           .join(Organisation, Organisation.id == Dataset.publisher_id)
                           .outerjoin(DatasetVersion, and_(DatasetVersion.dataset_id == Dataset.id,
                                                           DatasetVersion.number == Dataset.current_version))
                           .where(*cond)).all()
    if filters.language:
        rows = [r for r in rows if filters.language in (r[1] or [])]
    facets = _facets([tuple(r) for r in rows])
    matched = [r[0] for r in rows]
    if ids is not None:
        rank = {id_: i for i, id_ in enumerate(ids)}
        matched.sort(key=lambda i: rank[i])
    else:
        matched.sort(reverse=True)
    page = matched[offset:offset + limit]
    loaded = {d.id: d for d in session.scalars(select(Dataset).options(selectinload(Dataset.versions))
                                               .where(Dataset.id.in_(page)))}
    return Found(len(matched), [loaded[i] for i in page if i in loaded], facets)


def _facets(rows: Sequence[tuple[Any, ...]]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {name: Counter() for name in FACETS}
    for _id, languages, classification, licence, publisher, fmt in rows:
        counts["classification"][classification] += 1
        counts["licence"][licence] += 1
        counts["publisher"][publisher] += 1
        counts["format"][fmt or "none"] += 1
        for lang in languages or []:
            counts["language"][lang] += 1
    return {name: dict(c.most_common()) for name, c in counts.items()}
