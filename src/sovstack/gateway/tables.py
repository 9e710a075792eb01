"""Tables of the model gateway: logical models, their deployments, usage, counters, key and organisation policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sovstack.core.base import Base, runtime, sealed, singleton, utcnow
from sovstack.core.tables import Party
from sovstack.gateway.secrets import UPSTREAM_KEYS


class GatewayModel(Base):
    """A logical model name that clients ask for; one or more deployments serve it."""

    __tablename__ = "gateway_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    language_routing: Mapped[bool] = mapped_column(Boolean, default=False)
    routing: Mapped[str] = mapped_column(String(16), default="priority")  # routing.STRATEGIES
    fallbacks: Mapped[list[str]] = mapped_column(JSON, default=list)  # models tried when all its deployments fail
    # Disabled: hidden from /v1/models and refused on /v1, its deployments kept as they are.
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    deployments: Mapped[list[Deployment]] = relationship(back_populates="model", cascade="all, delete-orphan")


class Deployment(Base):
    """One place a model is served: an upstream OpenAI-compatible server, with its sovereignty facts."""

    __tablename__ = "gateway_deployments"
    # Ids are never reused: circuits (in every process's memory and in gateway_circuits) are keyed by id,
    # and a deployment created after a delete must not inherit the deleted one's open circuit.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("gateway_models.id", ondelete="CASCADE"), index=True)
    backend: Mapped[str] = mapped_column(String(32), default="openai")
    base_url: Mapped[str] = mapped_column(String(500))
    upstream_model: Mapped[str] = mapped_column(String(200))
    api_key_encrypted: Mapped[str] = mapped_column(Text, default="", info=sealed(UPSTREAM_KEYS))
    hosting_jurisdiction: Mapped[str] = mapped_column(String(2))
    operator_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    developer_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    licence: Mapped[str] = mapped_column(String(100), default="proprietary")
    open_weights: Mapped[bool] = mapped_column(Boolean, default=False)
    languages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    context_length: Mapped[int] = mapped_column(Integer, default=8192)
    price_in: Mapped[float] = mapped_column(Float, default=0.0)
    price_out: Mapped[float] = mapped_column(Float, default=0.0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")  # ISO 4217, of price_in and price_out
    priority: Mapped[int] = mapped_column(Integer, default=100)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    timeout_seconds: Mapped[float] = mapped_column(Float, default=60.0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    failures_to_open: Mapped[int] = mapped_column(Integer, default=3)
    cool_down_seconds: Mapped[float] = mapped_column(Float, default=30.0)
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    withdrawn_reason: Mapped[str] = mapped_column(String(300), default="")
    # Disabled by an admin, on its own (a cut-off withdraws by jurisdiction or party instead).
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    model: Mapped[GatewayModel] = relationship(back_populates="deployments")
    operator: Mapped[Party] = relationship(foreign_keys=[operator_id], lazy="joined")
    developer: Mapped[Party] = relationship(foreign_keys=[developer_id], lazy="joined")


class CircuitReport(Base):
    """The last circuit transition one server process saw for one deployment (written on transitions only)."""

    __tablename__ = "gateway_circuits"
    __table_args__ = {"info": runtime()}

    deployment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    failures: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class KeyPolicy(Base):
    """How an API key's gateway requests are classified: a default, and a floor a request cannot lower."""

    __tablename__ = "gateway_key_policies"

    key_prefix: Mapped[str] = mapped_column(String(32), primary_key=True)
    default_classification: Mapped[str] = mapped_column(String(16), default="open")
    floor_classification: Mapped[str] = mapped_column(String(16), default="open")
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: every model
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)


class OrgPolicy(Base):
    """What an organisation's admins require of every gateway call made for it, whichever key makes it.

    A key's own policy can be stricter, never looser: the proxy takes the stricter of the two.
    """

    __tablename__ = "gateway_org_policies"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    floor_classification: Mapped[str] = mapped_column(String(16), default="open")
    requests_per_minute_per_person: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_person: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tokens_period: Mapped[str] = mapped_column(String(8), default="month")


class OrgBudget(Base):
    """A token budget of an organisation per period."""

    __tablename__ = "gateway_budgets"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(8), default="month")


class Counter(Base):
    """A fixed-window counter shared by every server process (requests per minute, tokens per period)."""

    __tablename__ = "gateway_counters"
    __table_args__ = (UniqueConstraint("name", "window", name="uq_gateway_counter"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    window: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class Usage(Base):
    """One metered gateway call."""

    __tablename__ = "gateway_usage"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    key_prefix: Mapped[str] = mapped_column(String(32), index=True)
    organisation_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    deployment: Mapped[str] = mapped_column(String(200), default="")
    endpoint: Mapped[str] = mapped_column(String(32))
    classification: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(16), default="")
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    currency: Mapped[str] = mapped_column(String(3), default="")  # the answering deployment's; "" when none
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16))
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)  # tokens estimated: the upstream gave no usage


class SpendBudget(Base):
    """A limit on tokens, or on money in one currency, per period, of a key, a person or an organisation.

    ``subject`` is the key's prefix, the person's user id or the organisation's id; ``unit`` is ``tokens``
    or an ISO 4217 currency code (only spend in that currency counts). ``alerts`` are percentages of the
    limit at which an alert is recorded, once per period.
    """

    __tablename__ = "gateway_spend_budgets"
    __table_args__ = (UniqueConstraint("scope", "subject", "unit", name="uq_gateway_spend_budget"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(8))
    amount: Mapped[float] = mapped_column(Float)
    period: Mapped[str] = mapped_column(String(8), default="month")
    alerts: Mapped[list[int]] = mapped_column(JSON, default=list)


class SpendAlert(Base):
    """A budget reached one of its alert thresholds in one period (recorded once)."""

    __tablename__ = "gateway_spend_alerts"
    __table_args__ = (UniqueConstraint("budget_id", "window", "threshold", name="uq_gateway_spend_alert"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("gateway_spend_budgets.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(8))
    window: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int] = mapped_column(Integer)
    spent: Mapped[float] = mapped_column(Float)
    amount: Mapped[float] = mapped_column(Float)


class OrgLogging(Base):
    """An organisation's opt-in to keeping prompts and completions, for a limited time."""

    __tablename__ = "gateway_org_logging"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    retention_days: Mapped[int] = mapped_column(Integer, default=30)


class OrgCache(Base):
    """An organisation's opt-in to the exact-match answer cache (gateway/cache.py): kept this long."""

    __tablename__ = "gateway_org_cache"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    ttl_seconds: Mapped[int] = mapped_column(Integer)


class CachedAnswer(Base):
    """One kept answer, encrypted, until it expires."""

    __tablename__ = "gateway_cache"
    __table_args__ = {"info": runtime()}  # sealed with the deployment's key, and only a cache

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[int] = mapped_column(Integer, index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    body: Mapped[str] = mapped_column(Text)


class Transcript(Base):
    """A prompt and its completion, kept only for organisations that opted in, until it expires."""

    __tablename__ = "gateway_transcripts"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    organisation_id: Mapped[int] = mapped_column(Integer, index=True)
    key_prefix: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    deployment: Mapped[str] = mapped_column(String(200))
    request: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)


class OrgResponses(Base):
    """An organisation's opt-in to keeping Responses API answers (``previous_response_id``): kept this long."""

    __tablename__ = "gateway_org_responses"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    retention_days: Mapped[int] = mapped_column(Integer)


class StoredResponse(Base):
    """One kept Responses API answer, for its person in its organisation to read and continue until it expires.

    ``input_items`` (the earlier turns' items and this turn's input, as the next turn's context needs them)
    and ``response`` (the Response object with its output items) are sealed: encrypted with a key derived
    from the deployment secret. What is needed to find, scope and expire a row stays readable.
    """

    __tablename__ = "gateway_responses"
    # Conversation state for days, sealed under this deployment's own secret: not carried by an export.
    __table_args__ = {"info": runtime()}

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the resp_… id the client was given
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_prefix: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    classification: Mapped[str] = mapped_column(String(16))  # what it was routed under: the floor of a continuation
    status: Mapped[str] = mapped_column(String(16))
    previous_response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    input_items: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)


class Generation(Base):
    """One row: bumped by every change to what routing reads, so each process knows to reload."""

    __tablename__ = "gateway_generation"
    __table_args__ = {"info": singleton()}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
