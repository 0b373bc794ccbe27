"""Every table and status of digest. Nothing here is specific to SQLite or PostgreSQL.

The schema itself is owned by the Alembic migrations in digest/migrations; a test checks
that these models and the migrations agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# Deterministic constraint names, identical on SQLite and PostgreSQL, so migrations can name them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_db_time(moment: datetime | None, *, sqlite: bool) -> Any:
    """A time as it is stored: aware UTC on PostgreSQL, naive UTC text on SQLite (the form
    SQLAlchemy's SQLite DateTime writes). One codec for the models and the send loop's SQL."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: digest stores aware UTC times only")
    moment = moment.astimezone(UTC)
    if not sqlite:
        return moment
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def from_db_time(value: Any) -> datetime | None:
    """A stored time read back, aware UTC (SQLite gives naive UTC text or datetimes)."""
    if value is None:
        return None
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    aware: datetime = (
        moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    )
    return aware


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stored: datetime = to_db_time(value, sqlite=False)  # aware UTC, checked
        # SQLite: the DateTime type below writes the naive value as its text
        return stored.replace(tzinfo=None) if dialect.name == "sqlite" else stored

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return from_db_time(value)


def _ts(nullable: bool = False, index: bool = False, **kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, nullable=nullable, index=index, **kw)


def _fk(target: str, ondelete: str, **kw: Any) -> Any:
    """A column that refers to `target` ("issue.id"): CASCADE for a row that belongs to it,
    SET NULL (with default=None) for one that outlives it."""
    return Field(sa_column_args=[sa.ForeignKey(target, ondelete=ondelete)], **kw)


class SubscriberStatus(StrEnum):
    pending = "pending"
    active = "active"
    unsubscribed = "unsubscribed"
    bounced = "bounced"


class IssueStatus(StrEnum):
    # review = "required" (digest/issues/review.py): draft -> approved -> sending; a draft
    # not sent within max_issue_age_hours is stale, one cancelled before sending discarded
    draft = "draft"
    approved = "approved"
    stale = "stale"
    discarded = "discarded"
    sending = "sending"
    sent = "sent"
    sent_with_failures = "sent_with_failures"
    cancelled = "cancelled"


class DeliveryStatus(StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    deferred = "deferred"
    failed = "failed"
    skipped = "skipped"


TERMINAL_DELIVERY = (DeliveryStatus.sent, DeliveryStatus.failed, DeliveryStatus.skipped)


class Subscriber(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Random identity used in links and Message-IDs, so nothing public reveals row numbers.
    uid: str = Field(max_length=32, unique=True)
    email: str = Field(max_length=320)
    # casefold()ed address: one subscriber per mailbox whatever the capitalisation
    email_key: str = Field(max_length=320, unique=True)
    name: str = Field(default="", max_length=200)
    status: str = Field(default=SubscriberStatus.active, max_length=16, index=True)
    status_source: str = Field(default="cli", max_length=16)
    created_at: datetime = _ts(default_factory=utcnow)
    status_changed_at: datetime = _ts(default_factory=utcnow)
    confirmed_at: datetime | None = _ts(nullable=True, default=None)
    # Mailman's bounce score (digest/inbound/act.py): the sum of the counted bounce events,
    # back to zero after `bounce_reset_days` without one; `bounced` at `bounce_threshold`.
    bounce_score: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    bounce_counted_at: datetime | None = _ts(nullable=True, default=None)
    # How often they want the digest (one of the `frequencies` setting; see digest/topics.py).
    # Their topics are rows of subscriber_topic: none means every topic.
    frequency: str = Field(
        default="weekly", max_length=16, sa_column_kwargs={"server_default": "weekly"}
    )


class SubscriberEvent(SQLModel, table=True):
    """Every status change with its source, so an organisation can show consent."""

    __tablename__ = "subscriber_event"
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = _fk("subscriber.id", "CASCADE", index=True)
    at: datetime = _ts(default_factory=utcnow)
    status: str = Field(max_length=16)
    source: str = Field(max_length=16)
    detail: str = Field(default="", max_length=500)
    # a coarse marker of the web client (its network), when consent_client = "network"
    client: str = Field(default="", max_length=64)

    @classmethod
    def of(
        cls, sub: Subscriber, at: datetime, source: str, detail: str = "", client: str = ""
    ) -> SubscriberEvent:
        """The consent log's row for `sub` in its status now (detail and client cut to fit)."""
        assert sub.id is not None
        return cls(
            subscriber_id=sub.id, at=at, status=sub.status, source=source, detail=detail[:500],
            client=client[:64],
        )  # fmt: skip


class Topic(SQLModel, table=True):
    """What staff say about a topic (a category of news items): its description on the
    preferences page. Topics themselves come from the items; a row is made when one is described.
    `key` is `digest.topics.category_key(name)`."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=100, unique=True)
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=500)


class SubscriberTopic(SQLModel, table=True):
    """One topic a subscriber chose (by its key). A subscriber with none gets every topic."""

    __tablename__ = "subscriber_topic"
    __table_args__ = (sa.UniqueConstraint("subscriber_id", "topic_key"),)
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = _fk("subscriber.id", "CASCADE")
    topic_key: str = Field(max_length=100, index=True)


class Suppression(SQLModel, table=True):
    """A removed person, kept only as a keyed hash so a later import cannot silently re-add
    them, and someone with a copy of the database but not the key cannot test an address.

    `email_hash` is HMAC-SHA256(key, sha256(address)) with the key named by `key_id`; a row
    with no key_id is a legacy unkeyed sha256(address) (see migration 0008).
    """

    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(max_length=64, unique=True)
    key_id: str | None = Field(default=None, max_length=16)
    reason: str = Field(default="removed", max_length=32)
    created_at: datetime = _ts(default_factory=utcnow)


class NewsItem(SQLModel, table=True):
    __tablename__ = "news_item"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=1000, unique=True)
    title: str = Field(max_length=500)
    url: str = Field(max_length=2000)
    summary_html: str = Field(default="", sa_type=sa.Text)
    summary_text: str = Field(default="", sa_type=sa.Text)
    category: str = Field(default="", max_length=100)
    source: str = Field(default="manual", max_length=200)
    published_at: datetime = _ts(index=True)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    # What staff decided about the item (digest/news/control.py): "" nothing, "held" or
    # "removed" (kept out of issues), "included" (in the next issue whatever its date); who
    # decided, when and why. `edited`: the fields staff changed, which feeds leave alone.
    control: str = Field(default="", max_length=16, sa_column_kwargs={"server_default": ""})
    control_by: str = Field(default="", max_length=100, sa_column_kwargs={"server_default": ""})
    control_at: datetime | None = _ts(nullable=True, default=None)
    control_reason: str = Field(default="", max_length=500, sa_column_kwargs={"server_default": ""})
    edited: str = Field(default="", max_length=200, sa_column_kwargs={"server_default": ""})


class Issue(SQLModel, table=True):
    """One edition of the digest. Its items and rendered content are frozen when it is made."""

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True)
    uid: str = Field(max_length=32, unique=True)
    status: str = Field(default=IssueStatus.sending, max_length=24, index=True)
    subject: str = Field(max_length=500)
    period_start: datetime = _ts()
    period_end: datetime = _ts()
    created_at: datetime = _ts(default_factory=utcnow)
    completed_at: datetime | None = _ts(nullable=True, default=None)
    # The schedule period of an issue made by `digest send --scheduled` (e.g. "2026-W48");
    # UNIQUE, so two overlapping scheduled runs can never make two issues for one week.
    period_key: str | None = Field(default=None, max_length=32, unique=True)
    # The domain of its Message-IDs, frozen when it is made: a retry after `from` changed
    # keeps the same Message-ID (NULL for issues made before: the From domain then).
    message_id_domain: str | None = Field(default=None, max_length=253)
    # Review (review = "required"): who approved the draft and when, and when its review copy
    # was sent (a scheduled run sends it once, not every 30 minutes).
    approved_at: datetime | None = _ts(nullable=True, default=None)
    approved_by: str | None = Field(default=None, max_length=100)
    review_sent_at: datetime | None = _ts(nullable=True, default=None)
    # Whose issue it is: the subscribers of this frequency ("weekly", "daily"); NULL: every
    # active subscriber (`digest send` by hand, and every issue made before frequencies).
    frequency: str | None = Field(default=None, max_length=16)
    # How staff shaped it (--note, --featured): a draft's variants are rendered with them when
    # its recipients are frozen (at approval), and `issues refresh` keeps them.
    note_markdown: str = Field(default="", sa_type=sa.Text)
    featured_url: str | None = Field(default=None, max_length=2000)
    # Rendered once, CSS inlined, with per-recipient placeholders (see render.py).
    html: str = Field(sa_type=sa.Text)
    text: str = Field(sa_type=sa.Text)


class IssueItem(SQLModel, table=True):
    """A news item as it was sent in an issue; later edits to the item do not change it."""

    __tablename__ = "issue_item"
    __table_args__ = (sa.UniqueConstraint("issue_id", "position"),)
    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = _fk("issue.id", "CASCADE")
    news_item_id: int | None = _fk("news_item.id", "SET NULL", default=None, index=True)
    position: int
    title: str = Field(max_length=500)
    url: str = Field(max_length=2000)
    summary_html: str = Field(default="", sa_type=sa.Text)
    summary_text: str = Field(default="", sa_type=sa.Text)
    category: str = Field(default="", max_length=100)
    published_at: datetime = _ts()


class IssueVariant(SQLModel, table=True):
    """A part of an issue for readers of some topics: its items (positions in the issue),
    rendered and inlined once when the issue is made, and frozen like the issue itself."""

    __tablename__ = "issue_variant"
    __table_args__ = (sa.UniqueConstraint("issue_id", "positions"),)
    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = _fk("issue.id", "CASCADE")
    positions: str = Field(max_length=2000)  # "1,3,4": the issue's items it holds
    topics: str = Field(default="", max_length=1000)  # the topics it holds, as shown
    subject: str = Field(max_length=500)
    html: str = Field(sa_type=sa.Text)
    text: str = Field(sa_type=sa.Text)
    render_ms: float = Field(default=0.0)  # what rendering and inlining it cost


class Delivery(SQLModel, table=True):
    """One row per (issue, subscriber). Whether an issue is done is derived from these rows."""

    __table_args__ = (
        sa.UniqueConstraint("issue_id", "subscriber_id"),
        sa.Index("ix_delivery_issue_status", "issue_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = _fk("issue.id", "CASCADE")
    # NULL once the person was erased with `subscribers remove`; the row keeps the counts honest.
    subscriber_id: int | None = _fk("subscriber.id", "SET NULL", default=None, index=True)
    status: str = Field(default=DeliveryStatus.queued, max_length=16)
    attempts: int = Field(default=0)
    last_reply: str = Field(default="", max_length=500)
    updated_at: datetime | None = _ts(nullable=True, default=None)
    first_attempt_at: datetime | None = _ts(nullable=True, default=None)
    next_attempt_at: datetime | None = _ts(nullable=True, default=None)
    sent_at: datetime | None = _ts(nullable=True, default=None)
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_expires_at: datetime | None = _ts(nullable=True, default=None)
    # The part of the issue this subscriber gets, chosen when the delivery was queued (a
    # change of topics during the send changes nothing); NULL: the whole issue.
    variant_id: int | None = _fk("issue_variant.id", "CASCADE", default=None)


class SourceStatus(StrEnum):
    new = "new"  # not fetched yet
    ok = "ok"
    not_modified = "not_modified"  # 304: nothing changed since the last fetch
    warning = "warning"  # read, but partly (malformed XML, skipped entries)
    error = "error"  # the last fetch failed; stored items were left alone


class Source(SQLModel, table=True):
    """A feed fetched by `digest feeds fetch`, with what the last fetch did.

    ETag / Last-Modified are only stored after the feed's items were stored, so a 304 can
    never hide items we did not keep.
    """

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    url: str = Field(max_length=2000, unique=True)
    category: str = Field(default="", max_length=100)
    title: str = Field(default="", max_length=500)  # the feed's own title
    etag: str | None = Field(default=None, max_length=500)
    last_modified: str | None = Field(default=None, max_length=100)
    created_at: datetime = _ts(default_factory=utcnow)
    last_fetch_at: datetime | None = _ts(nullable=True, default=None)
    last_success_at: datetime | None = _ts(nullable=True, default=None)
    last_status: str = Field(default=SourceStatus.new, max_length=16)
    last_error: str = Field(default="", max_length=500)
    consecutive_failures: int = Field(default=0)
    item_count: int = Field(default=0)  # entries in the feed when it was last read
    last_new: int = Field(default=0)  # items the last read added


class SourceEntry(SQLModel, table=True):
    """Which item a feed entry became, by the feed's own id (guid) for that entry.

    Items are keyed on their canonical link, so one article through two feeds is one item;
    this table keeps a source's entry tied to its item when the source changes the link.
    """

    __tablename__ = "source_entry"
    __table_args__ = (sa.UniqueConstraint("source", "guid_hash"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=200)  # NewsItem.source of the feed
    guid_hash: str = Field(max_length=64)  # sha256 of the guid: guids can be long URLs
    news_item_id: int = _fk("news_item.id", "CASCADE", index=True)


class InboundKind(StrEnum):
    """What a message read from the bounce mailbox turned out to be."""

    bounce = "bounce"
    complaint = "complaint"
    unsubscribe = "unsubscribe"
    auto_reply = "auto_reply"
    person = "person"  # not a report we act on: left where it is for a person to read


class InboundMessage(SQLModel, table=True):
    """Every message read from a mailbox, once: its fingerprint is UNIQUE, so reading the same
    mailbox twice, or one message arriving by two routes, is processed only once."""

    __tablename__ = "inbound_message"
    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, unique=True)  # sha256 of Message-ID and body
    message_id: str = Field(default="", max_length=500)
    received_at: datetime = _ts(default_factory=utcnow, index=True)
    source: str = Field(default="", max_length=500)  # the mailbox it came from (no password)
    kind: str = Field(max_length=16)
    detail: str = Field(default="", max_length=500)


class BounceKind(StrEnum):
    permanent = "permanent"
    temporary = "temporary"
    complaint = "complaint"
    unsubscribe = "unsubscribe"


class BounceEvent(SQLModel, table=True):
    """A bounce, complaint or emailed unsubscribe about one subscriber, with the score after it.

    `origin` is UNIQUE: one event per (message, subscriber), or per delivery for a 5xx
    recorded during the SMTP conversation, however often the mailbox is read.
    """

    __tablename__ = "bounce_event"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(default_factory=utcnow, index=True)
    origin: str = Field(max_length=100, unique=True)
    subscriber_id: int | None = _fk("subscriber.id", "SET NULL", default=None, index=True)
    email: str = Field(default="", max_length=320)
    issue_id: int | None = _fk("issue.id", "SET NULL", default=None, index=True)
    delivery_id: int | None = _fk("delivery.id", "SET NULL", default=None)
    inbound_message_id: int | None = _fk("inbound_message.id", "SET NULL", default=None)
    kind: str = Field(max_length=16)
    status: str = Field(default="", max_length=32)  # enhanced status (5.1.1) or SMTP code
    diagnostic: str = Field(default="", max_length=500)
    counted: bool = Field(default=False)  # added to the score (at most one event a day)
    score_after: float = Field(default=0.0)
