"""Tables of the data commons: datasets, their immutable versions, access requests, grants, queries."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sovstack.core.base import Base, utcnow
from sovstack.core.tables import Organisation


class Dataset(Base):
    """A catalogue entry: what the data is, who publishes it, how it is classified and where it is stored."""

    __tablename__ = "data_datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # the slug users and SQL refer to
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    publisher_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    licence: Mapped[str] = mapped_column(String(100))
    classification: Mapped[str] = mapped_column(String(16), index=True)
    storage_jurisdiction: Mapped[str] = mapped_column(String(2))
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    spatial: Mapped[str] = mapped_column(String(300), default="")
    temporal_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    temporal_end: Mapped[date | None] = mapped_column(Date, nullable=True)
    provenance: Mapped[str] = mapped_column(Text, default="")
    entity_column: Mapped[str] = mapped_column(String(200), default="")
    k_threshold: Mapped[int] = mapped_column(Integer, default=10)
    # Differential privacy (sensitive data): each person's lifetime ε on this dataset, the most rows one
    # entity may have, clamping bounds per column {col: [low, high]}, public key values {col: [values]}.
    dp_epsilon_cap: Mapped[float] = mapped_column(Float, default=1.0)
    dp_max_rows_per_entity: Mapped[int] = mapped_column(Integer, default=1)
    dp_bounds: Mapped[dict[str, list[float]]] = mapped_column(JSON, default=dict)
    dp_keys: Mapped[dict[str, list[Any]]] = mapped_column(JSON, default=dict)
    dp_delta_cap: Mapped[float] = mapped_column(Float, default=0.0)  # 0: no thresholded release of unknown keys
    current_version: Mapped[int] = mapped_column(Integer, default=0)  # 0: nothing uploaded yet
    search_text: Mapped[str] = mapped_column(Text, default="")  # what full-text search indexes
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    publisher: Mapped[Organisation] = relationship(lazy="joined")
    versions: Mapped[list[DatasetVersion]] = relationship(back_populates="dataset", order_by="DatasetVersion.number",
                                                          cascade="all, delete-orphan")


class DatasetVersion(Base):
    """One upload, immutable: a content-addressed Parquet object with its schema and row count."""

    __tablename__ = "data_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number", name="uq_data_versions_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("data_datasets.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    source_format: Mapped[str] = mapped_column(String(16))
    source_bytes: Mapped[int] = mapped_column(BigInteger)
    parquet_bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # name, type, description, stats
    note: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions")


class AccessRequest(Base):
    """A member asks for access to a dataset, with a purpose and a duration; a steward decides."""

    __tablename__ = "data_access_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("data_datasets.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), nullable=True)
    purpose: Mapped[str] = mapped_column(Text)
    days: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # the steward's, shown to the requester
    decided_by: Mapped[str] = mapped_column(String(320), default="")
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    dataset: Mapped[Dataset] = relationship(lazy="joined")


class AccessGrant(Base):
    """Access a user holds to a dataset until it expires or is revoked; ``mode`` download or sandbox."""

    __tablename__ = "data_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("data_datasets.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), nullable=True)
    mode: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("data_access_requests.id"), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_reason: Mapped[str] = mapped_column(Text, default="")
    granted_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    epsilon_budget: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: the dataset's cap
    daily_queries: Mapped[int | None] = mapped_column(Integer, nullable=True)   # None: the deployment's default

    dataset: Mapped[Dataset] = relationship(lazy="joined")


class SandboxQuery(Base):
    """One sandbox query: what was asked, on which grants and versions, and what came out."""

    __tablename__ = "data_queries"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    sql: Mapped[str] = mapped_column(Text)
    parse_hash: Mapped[str] = mapped_column(String(64), default="")
    datasets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # name, version, grant
    outcome: Mapped[str] = mapped_column(String(16))  # ok | refused | failed
    message: Mapped[str] = mapped_column(Text, default="")
    rows_out: Mapped[int] = mapped_column(Integer, default=0)
    cells_suppressed: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_ms: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    sql_sha256: Mapped[str] = mapped_column(String(64), default="")  # of the SQL exactly as sent
    epsilon: Mapped[float] = mapped_column(Float, default=0.0)       # privacy budget this query spent
    cached: Mapped[bool] = mapped_column(Boolean, default=False)     # answered again from an earlier release


class QueryDataset(Base):
    """Which datasets a query named: the stewards' view reads it by dataset, so no volume of other
    queries can push a dataset's queries out of sight."""

    __tablename__ = "data_query_datasets"
    __table_args__ = (Index("ix_data_query_datasets_dataset", "dataset_id", "query_id"),)

    query_id: Mapped[int] = mapped_column(ForeignKey("data_queries.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("data_datasets.id", ondelete="CASCADE"), primary_key=True)


class PrivacyLedger(Base):
    """The privacy budget one person has spent on one dataset, across every grant and key they hold."""

    __tablename__ = "data_privacy_ledger"
    __table_args__ = (UniqueConstraint("user_id", "dataset_id", name="uq_data_privacy_ledger_person"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("data_datasets.id", ondelete="CASCADE"))
    epsilon_spent: Mapped[float] = mapped_column(Float, default=0.0)
    answers: Mapped[int] = mapped_column(Integer, default=0)
    delta_spent: Mapped[float] = mapped_column(Float, default=0.0)


class PrivateAnswer(Base):
    """A differentially private answer already released to a person: asked again, it is given again, free."""

    __tablename__ = "data_private_answers"
    __table_args__ = (UniqueConstraint("user_id", "dataset_id", "version_sha256", "parse_hash", "epsilon", "delta",
                                       name="uq_data_private_answers_question"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("data_datasets.id", ondelete="CASCADE"))
    version_sha256: Mapped[str] = mapped_column(String(64))
    parse_hash: Mapped[str] = mapped_column(String(64))
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float, default=0.0)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class QueryQuota(Base):
    """How many sandbox queries one person has sent in one window (a minute, or a day on one dataset).

    Counted with one guarded UPDATE per query, so concurrent queries cannot pass a limit together.
    """

    __tablename__ = "data_query_quota"
    __table_args__ = (UniqueConstraint("user_id", "window", name="uq_data_query_quota_window"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    window: Mapped[str] = mapped_column(String(80))  # m:<minute> or d:<day>:<dataset id>
    count: Mapped[int] = mapped_column(Integer, default=0)


class AirlockRequest(Base):
    """An exact result held for a steward's output check: released or refused with a reason, never both."""

    __tablename__ = "data_airlock"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("data_datasets.id", ondelete="CASCADE"), index=True)
    grant_id: Mapped[int | None] = mapped_column(ForeignKey("data_grants.id"), nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    version_sha256: Mapped[str] = mapped_column(String(64))
    sql: Mapped[str] = mapped_column(Text)
    sql_sha256: Mapped[str] = mapped_column(String(64))
    parse_hash: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="held", index=True)  # held | released | refused
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    rows: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)      # exact, as held: stewards only
    checks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)     # what the output check found
    released_rows: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)  # what left, suppression applied
    reviewed_by: Mapped[str] = mapped_column(String(320), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    dataset: Mapped[Dataset] = relationship(lazy="joined")
