"""Full-text search over the catalogue, with facets: SQLite FTS5, or PostgreSQL's text search."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Float, Integer, and_, func, select, text, true
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


def reindex_all(session: Session) -> None:
    """Rebuild the SQLite full-text index from every dataset's kept search text (after an import);
    PostgreSQL searches the column itself."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DELETE FROM data_search"))
        session.execute(text("INSERT INTO data_search (rowid, body) SELECT id, search_text FROM data_datasets"))


def _text(session: Session, q: str) -> tuple[Any, Any] | None:
    """(a selectable of matching ids with a ``score``, lower is better), or None when ``q`` has no words."""
    words = re.findall(r"\w+", q)
    if not words:
        return None
    if session.get_bind().dialect.name == "sqlite":
        match = " ".join(f'"{w}"*' for w in words)  # every word, as a prefix; quotes keep FTS syntax out
        fts = (text("SELECT rowid AS id, rank AS score FROM data_search WHERE data_search MATCH :m")
               .bindparams(m=match).columns(id=Integer, score=Float).subquery("fts"))
        return fts, fts.c.score
    vector = func.to_tsvector(text("'simple'"), Dataset.search_text)
    query = func.to_tsquery(text("'simple'"), " & ".join(f"{w}:*" for w in words))  # \w+ only: no tsquery syntax
    ranked = (select(Dataset.id.label("id"), (-func.ts_rank(vector, query)).label("score"))
              .where(vector.op("@@")(query)).subquery("fts"))
    return ranked, ranked.c.score


def _languages(session: Session) -> Any:
    """The languages of each dataset as rows (``value``), from its JSON list."""
    if session.get_bind().dialect.name == "sqlite":  # json_each has a ``value`` column of its own
        return func.json_each(Dataset.languages).table_valued("value").alias("lang")
    return func.json_array_elements_text(Dataset.languages).table_valued("value").render_derived("lang")


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
    if f.language:
        lang = _languages(session)
        cond.append(select(lang.c.value).where(lang.c.value == f.language).exists())
    return cond


def find(session: Session, q: str, filters: Filters, *, anonymous: bool, limit: int = 20, offset: int = 0) -> Found:
    """A page of matching datasets (best first when searching, else newest first) and facet counts.

    Everything is counted and ordered in the database, so the cost grows with the page, not the catalogue.
    """
    matched = select(Dataset.id).where(*_conditions(session, anonymous, filters))
    ranked = _text(session, q)
    page_q = select(Dataset.id)
    if ranked is not None:
        fts, score = ranked
        matched = matched.join(fts, fts.c.id == Dataset.id)
        page_q = page_q.join(fts, fts.c.id == Dataset.id).order_by(score, Dataset.id)
    else:
        page_q = page_q.order_by(Dataset.id.desc())
    ids = matched.subquery("matched")
    page = [r[0] for r in session.execute(page_q.where(Dataset.id.in_(select(ids.c.id)))
                                          .limit(limit).offset(offset))]
    total = session.scalar(select(func.count()).select_from(ids)) or 0
    loaded = {d.id: d for d in session.scalars(select(Dataset).options(selectinload(Dataset.versions))
                                               .where(Dataset.id.in_(page)))}
    return Found(total, [loaded[i] for i in page if i in loaded], _facets(session, select(ids.c.id)))


def _facets(session: Session, ids: Any) -> dict[str, dict[str, int]]:
    n = func.count()
    current = and_(DatasetVersion.dataset_id == Dataset.id, DatasetVersion.number == Dataset.current_version)
    lang = _languages(session)
    queries = {
        "publisher": select(Organisation.name, n).join(Dataset, Dataset.publisher_id == Organisation.id)
        .where(Dataset.id.in_(ids)).group_by(Organisation.name),
        "classification": select(Dataset.classification, n).where(Dataset.id.in_(ids)).group_by(Dataset.classification),
        "language": select(lang.c.value, n).select_from(Dataset).join(lang, true())
        .where(Dataset.id.in_(ids)).group_by(lang.c.value),
        "licence": select(Dataset.licence, n).where(Dataset.id.in_(ids)).group_by(Dataset.licence),
        "format": select(DatasetVersion.source_format, n).select_from(Dataset)
        .outerjoin(DatasetVersion, current).where(Dataset.id.in_(ids)).group_by(DatasetVersion.source_format),
    }
    facets = {}
    for name, query in queries.items():
        counts = Counter({"none" if value is None else str(value): int(count)
                          for value, count in session.execute(query)})
        facets[name] = dict(counts.most_common())
    return facets
