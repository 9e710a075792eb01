"""Tables of the compute exchange: providers, offers, programmes, rounds, requests, reviews,
allocations, usage reports and cut-off drills."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sovstack.core.base import Base, utcnow
from sovstack.core.tables import Organisation, Party

Money = Numeric(16, 4, asdecimal=False)  # exact in the database, a float in Python


class ComputeProvider(Base):
    """An empanelled provider: a party, where its data centres and control plane sit, who staffs it."""

    __tablename__ = "compute_providers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), nullable=True, index=True)
    corporate_group: Mapped[str] = mapped_column(String(200))
    datacentre_jurisdiction: Mapped[str] = mapped_column(String(2))
    control_plane_jurisdiction: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    party: Mapped[Party] = relationship(lazy="joined")
    organisation: Mapped[Organisation | None] = relationship(lazy="joined")
    offers: Mapped[list[ComputeOffer]] = relationship(back_populates="provider", order_by="ComputeOffer.id")


class ComputeOffer(Base):
    """Capacity a provider offers at a published price: GPUs of one type over a window of dates."""

    __tablename__ = "compute_offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("compute_providers.id"), index=True)
    gpu_type: Mapped[str] = mapped_column(String(32))
    chip_vendor: Mapped[str] = mapped_column(String(64))
    gpu_count: Mapped[int] = mapped_column(Integer)
    price: Mapped[float] = mapped_column(Money)  # per GPU-hour, in the programme currency
    available_from: Mapped[date] = mapped_column(Date)
    available_until: Mapped[date] = mapped_column(Date)  # inclusive
    delivery: Mapped[str] = mapped_column(String(16))  # committed | delivered
    benchmark: Mapped[str] = mapped_column(Text, default="")  # evidence of delivered capacity
    withdrawn_by: Mapped[int | None] = mapped_column(Integer, nullable=True)  # cut-off drill id, while active
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    provider: Mapped[ComputeProvider] = relationship(back_populates="offers", lazy="joined")


class Programme(Base):
    """A subsidy programme: its budget and rates, who is eligible, category bounds, caps and cadence."""

    __tablename__ = "compute_programmes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    currency: Mapped[str] = mapped_column(String(3))
    budget: Mapped[float] = mapped_column(Money)
    subsidy_rate: Mapped[float] = mapped_column(Float)
    category_rates: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    eligible_kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    eligible_jurisdictions: Mapped[list[str]] = mapped_column(JSON, default=list)
    category_floor: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    category_ceiling: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    fast_track_gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    caps: Mapped[dict[str, float | None]] = mapped_column(JSON, default=dict)
    start: Mapped[date] = mapped_column(Date)
    periods: Mapped[int] = mapped_column(Integer)
    period_days: Mapped[int] = mapped_column(Integer, default=7)
    idle_days: Mapped[int] = mapped_column(Integer, default=14)
    gap_limit: Mapped[float] = mapped_column(Float, default=0.01)
    time_limit: Mapped[float] = mapped_column(Float, default=10.0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AllocationRound(Base):
    """One review-and-allocate cycle of a programme, and the solver's published result."""

    __tablename__ = "compute_rounds"
    __table_args__ = (UniqueConstraint("programme_id", "number", name="uq_compute_rounds_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("compute_programmes.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    review_deadline: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | allocated
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    solved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    programme: Mapped[Programme] = relationship(lazy="joined")


class ComputeRequest(Base):
    """An application for GPU-hours: what hardware, how much, when, on what data, and why."""

    __tablename__ = "compute_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("compute_programmes.id"), index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("compute_rounds.id"), nullable=True, index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    title: Mapped[str] = mapped_column(String(300))
    proposal: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(32))
    gpu_types: Mapped[list[str]] = mapped_column(JSON)
    gpus_per_job: Mapped[int] = mapped_column(Integer)
    gpu_hours: Mapped[float] = mapped_column(Float)
    earliest_period: Mapped[int] = mapped_column(Integer)
    latest_period: Mapped[int] = mapped_column(Integer)
    data_classification: Mapped[str] = mapped_column(String(16))
    fast_track: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="submitted")  # submitted|allocated|unallocated|withdrawn
    explanation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    programme: Mapped[Programme] = relationship(lazy="joined")
    organisation: Mapped[Organisation] = relationship(lazy="joined")
    reviews: Mapped[list[Review]] = relationship(back_populates="request", order_by="Review.id")


class Review(Base):
    """A reviewer's merit score for a request (never for their own organisation's)."""

    __tablename__ = "compute_reviews"
    __table_args__ = (UniqueConstraint("request_id", "reviewer_id", name="uq_compute_reviews_reviewer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("compute_requests.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    score: Mapped[float] = mapped_column(Float)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    request: Mapped[ComputeRequest] = relationship(back_populates="reviews")


class Allocation(Base):
    """A request placed on an offer for some periods, with its cost split; the provider accepts or declines."""

    __tablename__ = "compute_allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("compute_requests.id"), index=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("compute_offers.id"), index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("compute_rounds.id"), nullable=True, index=True)
    start_period: Mapped[int] = mapped_column(Integer)
    periods: Mapped[list[int]] = mapped_column(JSON)
    gpus: Mapped[int] = mapped_column(Integer)
    gpu_hours: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Money)
    cost: Mapped[float] = mapped_column(Money)
    subsidy: Mapped[float] = mapped_column(Money)
    # proposed | accepted | declined | superseded | displaced | reclaimed
    status: Mapped[str] = mapped_column(String(16), default="proposed", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    used_gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    request: Mapped[ComputeRequest] = relationship(lazy="joined")
    offer: Mapped[ComputeOffer] = relationship(lazy="joined")


class UsageReport(Base):
    """GPU-hours a provider says an allocation used; ``reference`` makes a re-sent report harmless."""

    __tablename__ = "compute_usage"
    __table_args__ = (UniqueConstraint("allocation_id", "reference", name="uq_compute_usage_reference"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("compute_allocations.id"), index=True)
    gpu_hours: Mapped[float] = mapped_column(Float)
    day: Mapped[date] = mapped_column(Date)
    reference: Mapped[str] = mapped_column(String(100))
    reported_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Cutoff(Base):
    """A cut-off drill: capacity withdrawn as if a provider left, the re-solve's report, and its undo."""

    __tablename__ = "compute_cutoffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    selector: Mapped[str] = mapped_column(String(32))  # provider | jurisdiction | chip_vendor
    value: Mapped[str] = mapped_column(String(200))
    offers: Mapped[list[int]] = mapped_column(JSON, default=list)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    undo: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # allocation id -> status before; new ids
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    restored_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
