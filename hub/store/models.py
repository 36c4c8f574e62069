"""The deal store: typed SQLAlchemy 2 models.

Hot paths (intake, the lead pipeline) write through Core statements on these
tables in bulk; the CLI and the API read through the ORM.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hub.store.types import JSONType, UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class User(Base):
    """A member of the sales team: a manager who owns deals, a head of sales, an admin."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="manager")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    extension: Mapped[str | None] = mapped_column(String(20))
    phone: Mapped[str | None] = mapped_column(String(32))
    telegram_chat_id: Mapped[str | None] = mapped_column(String(64))
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    # The name without legal form, quotes and case, in Latin letters: how companies are found.
    name_key: Mapped[str | None] = mapped_column(String(300), index=True)
    tax_id: Mapped[str | None] = mapped_column(String(20), index=True)
    external_id: Mapped[str | None] = mapped_column(String(100), index=True)
    city: Mapped[str | None] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(300))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    city: Mapped[str | None] = mapped_column(String(100))
    segment: Mapped[str | None] = mapped_column(String(100), index=True)
    external_id: Mapped[str | None] = mapped_column(String(100), index=True)
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Surname stem and first name in Latin (hub.domain.similarity.person_key): intake finds a
    # returning client with a new phone and mailbox by it.
    name_key: Mapped[str | None] = mapped_column(String(120), index=True)
    # The birth date of ``custom`` (hub.domain.blocking.birth_key): a card without a surname
    # is found by it and the address.
    birth_date: Mapped[str | None] = mapped_column(String(32), index=True)


class ContactPoint(Base):
    """A phone or an email of a contact, kept as entered and normalized (E.164, lower case)."""

    __tablename__ = "contact_points"
    __table_args__ = (Index("ix_contact_points_lookup", "kind", "normalized"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))  # phone | email
    value: Mapped[str] = mapped_column(String(320))
    normalized: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Pipeline(Base):
    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class Stage(Base):
    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("pipeline_id", "key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    probability: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(10), default="open")  # open | won | lost
    contact_within_s: Mapped[int | None] = mapped_column(Integer)
    time_limit_s: Mapped[int | None] = mapped_column(Integer)
    required_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Deal(Base):
    __tablename__ = "deals"
    __table_args__ = (
        Index("ix_deals_contact_status", "contact_id", "status"),
        Index("ix_deals_owner_status", "owner_id", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    source: Mapped[str | None] = mapped_column(String(100))
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    segment: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | won | lost
    loss_reason: Mapped[str | None] = mapped_column(String(200))
    competitor: Mapped[str | None] = mapped_column(String(200))
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)
    inbox_id: Mapped[int | None] = mapped_column(Id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    stage_entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column()


class StageChange(Base):
    __tablename__ = "stage_history"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    from_stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.id"))
    to_stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    override: Mapped[str | None] = mapped_column(String(500))  # why a rule was skipped


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_owner_open", "owner_id", "done_at", "due_at"),
        # "Has this deal an open task?": the traffic light and the audits ask it of every deal.
        Index(
            "ix_tasks_open_deal",
            "deal_id",
            sqlite_where=text("done_at IS NULL"),
            postgresql_where=text("done_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20), default="call")
    deal_id: Mapped[int | None] = mapped_column(
        ForeignKey("deals.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    due_at: Mapped[datetime] = mapped_column()
    done_at: Mapped[datetime | None] = mapped_column()
    result: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    deal_id: Mapped[int | None] = mapped_column(
        ForeignKey("deals.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Activity(Base):
    """Something that happened with a client: a form, an email, a call, an SMS, a note."""

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # form | email | call | sms | note
    direction: Mapped[str] = mapped_column(String(10), default="in")
    deal_id: Mapped[int | None] = mapped_column(
        ForeignKey("deals.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    summary: Mapped[str] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    inbox_id: Mapped[int | None] = mapped_column(Id)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class DomainEvent(Base):
    """A change in the store, written in the same transaction as the change."""

    __tablename__ = "domain_events"
    __table_args__ = (Index("ix_domain_events_subject", "subject", "subject_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(20))  # deal | contact | task | lead ...
    subject_id: Mapped[int | None] = mapped_column(Id)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboxEvent(Base):
    """A channel's raw input, stored durably before the channel is answered."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("channel", "idem_key"),
        Index("ix_inbox_pending", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel: Mapped[str] = mapped_column(String(100))
    idem_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|done|dead|spam
    payload: Mapped[dict[str, Any]] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column()
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class LossReason(Base):
    __tablename__ = "loss_reasons"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class HubState(Base):
    """Small durable counters and cursors (round-robin position, event cursors)."""

    __tablename__ = "hub_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Counter(Base):
    """A named counter bumped atomically (the round-robin position)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[int] = mapped_column(Id, default=0)


class DuplicateCandidate(Base):
    """Two contacts that may be one person, waiting for a person to decide."""

    __tablename__ = "duplicate_candidates"
    __table_args__ = (UniqueConstraint("contact_id", "other_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    other_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[dict[str, Any]] = mapped_column()
    origin: Mapped[str] = mapped_column(String(20))  # intake | scan | import
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | merged | dismissed
    inbox_id: Mapped[int | None] = mapped_column(Id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Merge(Base):
    """One merge of two contacts, with everything needed to undo it."""

    __tablename__ = "merges"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), default="contact", server_default="contact")
    keep_id: Mapped[int] = mapped_column(Id, index=True)
    other_id: Mapped[int] = mapped_column(Id)
    moved: Mapped[dict[str, Any]] = mapped_column()  # table → ids; snapshots of both rows
    rule: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column()


class ApiRequest(Base):
    """An API write's ``Idempotency-Key`` and its first answer, replayed for a retry."""

    __tablename__ = "api_requests"

    principal: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and body
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Nonce(Base):
    """A key a channel accepts once (a signed request's signature), claimed until
    ``expires_at``: a second claim before then is a replay (hub/intake/nonces.py)."""

    __tablename__ = "nonces"

    namespace: Mapped[str] = mapped_column(String(100), primary_key=True)  # the channel
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # the key's SHA-256, hex
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Violation(Base):
    """A rule an audit found broken, from first seen until it clears."""

    __tablename__ = "violations"
    __table_args__ = (
        # One open violation per rule and record; cleared ones stay as history.
        Index(
            "ix_violations_open",
            "rule",
            "subject",
            "subject_id",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        # The audit's report by owner reads open violations only, not the cleared history.
        Index(
            "ix_violations_open_owner",
            "owner_id",
            "rule",
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    rule: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(20))  # deal | task | contact | stage_change
    subject_id: Mapped[int] = mapped_column(Id)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    severity: Mapped[str] = mapped_column(String(10))  # red | yellow
    detail: Mapped[str] = mapped_column(String(500))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()


class Notification(Base):
    """A message in the notification outbox, from queued to sent (or failed, or held for
    review when a crash left it unknown whether it went out)."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "ix_notifications_due",
            "due_at",
            sqlite_where=text("state = 'queued'"),
            postgresql_where=text("state = 'queued'"),
        ),
        Index(
            "ix_notifications_sending",
            "lease_until",
            sqlite_where=text("state = 'sending'"),
            postgresql_where=text("state = 'sending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    notifier: Mapped[str] = mapped_column(String(50))
    address: Mapped[str] = mapped_column(String(320))
    template: Mapped[str | None] = mapped_column(String(100))
    context: Mapped[dict[str, Any]] = mapped_column()
    event_type: Mapped[str | None] = mapped_column(String(50))
    deal_id: Mapped[int | None] = mapped_column(Id, index=True)
    user_id: Mapped[int | None] = mapped_column(Id)
    queued_by: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(10), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(500))
    provider_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class ContactExternalId(Base):
    """An id the contact has in another system (``1c:000123``, ``bitrix:5567``): every one it
    was ever given is kept, so a merge never loses a reference back to a source. ``system`` is
    empty for an id given without one (a legacy ``contacts.external_id``)."""

    __tablename__ = "contact_external_ids"
    __table_args__ = (UniqueConstraint("system", "external_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    system: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consent(Base):
    """Whether a contact agreed to advertising on a channel (sms, email), where that came
    from (a form's checkbox, an import column, the API, an unsubscribe link, a STOP reply,
    a hard bounce) and when. One row per contact and channel: the latest word; the history
    is in the domain events."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("contact_id", "channel"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(10))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    """A message to a segment through one channel: its template, pace and quiet hours."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(10))  # sms | email
    gateway: Mapped[str] = mapped_column(String(50))
    segment: Mapped[str] = mapped_column(String(100))
    # The segment's filter as it was when the campaign was created.
    audience: Mapped[dict[str, Any]] = mapped_column()
    subject: Mapped[str | None] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    # A service message (an order, a price change under contract) needs no advertising
    # consent; an opt-out still holds.
    service: Mapped[bool] = mapped_column(Boolean, default=False)
    rate: Mapped[float] = mapped_column()
    quiet_hours: Mapped[str | None] = mapped_column(String(20))
    start_at: Mapped[datetime | None] = mapped_column()
    state: Mapped[str] = mapped_column(String(10), default="draft")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class CampaignMessage(Base):
    """One recipient of a campaign in the campaign outbox, from queued (or skipped, with
    the reason) to sent and delivered, failed, or held for review."""

    __tablename__ = "campaign_messages"
    __table_args__ = (
        # The sender's claim: a campaign's due rows in order, without sorting them all.
        Index(
            "ix_campaign_messages_claim",
            "campaign_id",
            "due_at",
            "id",
            sqlite_where=text("state = 'queued'"),
            postgresql_where=text("state = 'queued'"),
        ),
        # Sent messages by when their delivery report is next asked for.
        Index(
            "ix_campaign_messages_report",
            "gateway",
            "due_at",
            sqlite_where=text("state = 'sent'"),
            postgresql_where=text("state = 'sent'"),
        ),
        Index("ix_campaign_messages_provider", "gateway", "provider_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int] = mapped_column(Id, index=True)
    gateway: Mapped[str] = mapped_column(String(50))
    address: Mapped[str | None] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(10))
    skip_reason: Mapped[str | None] = mapped_column(String(30))
    attempts: Mapped[int] = mapped_column(default=0)
    # When the row next needs the hub: queued, to be sent; sent, its report asked for.
    due_at: Mapped[datetime] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column()
    provider_id: Mapped[str | None] = mapped_column(String(200))
    parts: Mapped[int | None] = mapped_column()
    cost: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))  # where the gateway says
    error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()


class GatewayPace(Base):
    """When a gateway may next be given a message: every hub process books its sends here,
    so several processes on one store share one rate."""

    __tablename__ = "gateway_pace"

    gateway: Mapped[str] = mapped_column(String(50), primary_key=True)
    next_at: Mapped[datetime] = mapped_column()
