"""What a subscriber receives, as staff (`subscribers add/set/list`) and the subscriber (the
preferences page) change it: the services over digest.topics and digest.subscribers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from digest.addresses import address_key
from digest.compose.recipients import PREFERENCES
from digest.config import Settings
from digest.errors import UsageError
from digest.models import Subscriber, SubscriberStatus
from digest.subscribers import add_subscriber, get_subscriber, list_subscribers
from digest.tokens import check_token, make_token
from digest.topics import (
    Preferences,
    TopicInfo,
    check_frequency,
    effective_frequency,
    list_topics,
    preferences_of,
    resolve_topics,
    set_preferences,
    topic_keys_of,
    topics_text,
)


def listing(
    session: Session, settings: Settings, status: SubscriberStatus | None = None
) -> tuple[Sequence[Subscriber], dict[int, str]]:
    """The subscribers (`subscribers list`, export) and each one's topics as text."""
    subs = list_subscribers(session, status)
    return subs, topics_text(session, settings, subs)


def add_choosing(
    session: Session,
    settings: Settings,
    *,
    email: str,
    name: str | None,
    status: SubscriberStatus,
    topics: Sequence[str],
    frequency: str | None,
) -> tuple[Subscriber, Preferences]:
    """`subscribers add`: a new subscriber with their topics and frequency (checked first)."""
    resolve_topics(list_topics(session, settings), topics)
    if frequency is not None:
        check_frequency(settings, frequency)
    sub = add_subscriber(
        session, email=email, keyring=settings.keyring(), name=name, status=status,
        allow_special_use=settings.allow_special_use_domains,
    )  # fmt: skip
    if topics or frequency:
        set_preferences(session, settings, sub, topics=topics, frequency=frequency, source="cli")
    else:
        sub.frequency = settings.offered_frequencies[0]
        session.add(sub)
    return sub, preferences_of(session, settings, sub)


def set_preferences_of(
    session: Session,
    settings: Settings,
    email: str,
    *,
    topics: Sequence[str] | None,
    frequency: str | None,
) -> tuple[list[str], Preferences]:
    """`subscribers set`: change a subscriber's topics and frequency (source cli)."""
    sub = get_subscriber(session, email)
    changes = set_preferences(
        session, settings, sub, topics=topics, frequency=frequency, source="cli"
    )
    return changes, preferences_of(session, settings, sub)


# The preferences page (digest/web/preferences.py) -----------------------------------------


@dataclass(frozen=True)
class PreferencesPage:
    """What the page shows one subscriber: every topic (ticked: chosen), how often, and the
    token of their unsubscribe button."""

    email: str
    status: str
    topics: list[tuple[TopicInfo, bool]]
    every: bool  # they chose no topic: every one, new ones too
    frequency: str
    frequencies: tuple[str, ...]
    unsubscribe_token: str


def _subscriber_by_token(session: Session, settings: Settings, token: str) -> Subscriber | None:
    """The subscriber a valid preferences token names (retired keys too: old mail's links
    keep working); None for a tampered or foreign token, or a person erased since."""
    uid = check_token(settings.keyring(), PREFERENCES, token, retired_ok=True).uid
    if uid is None:
        return None
    return session.exec(select(Subscriber).where(Subscriber.uid == uid)).first()


def preferences_page(session: Session, settings: Settings, token: str) -> PreferencesPage | None:
    sub = _subscriber_by_token(session, settings, token)
    if sub is None:
        return None
    known = list_topics(session, settings)
    keys = topic_keys_of(session, [sub.id or 0]).get(sub.id or 0, frozenset())
    return PreferencesPage(
        email=sub.email, status=sub.status, topics=[(t, t.key in keys) for t in known],
        every=not keys, frequency=effective_frequency(settings, sub.frequency),
        frequencies=settings.offered_frequencies,
        unsubscribe_token=make_token(settings.secret_key_bytes(), "unsubscribe", sub.uid),
    )  # fmt: skip


def save_preferences(
    session: Session,
    settings: Settings,
    token: str,
    *,
    every: bool,
    topic_keys: Sequence[str],
    frequency: str | None,
    client: str = "",
) -> tuple[list[str], PreferencesPage] | None:
    """The page's POST: what changed (also in the consent log, source web) and the page
    after it; None for a bad token (nothing changes). UsageError for a choice not offered."""
    sub = _subscriber_by_token(session, settings, token)
    if sub is None:
        return None
    known = {t.key: t.name for t in list_topics(session, settings)}
    if not every and not topic_keys:
        raise UsageError("tick at least one topic, or choose every topic")
    unknown = [k for k in topic_keys if k not in known]
    if unknown:
        raise UsageError("that topic is no longer offered; please choose again")
    names = [] if every else [known[k] for k in dict.fromkeys(topic_keys)]
    changes = set_preferences(
        session, settings, sub, topics=names, frequency=frequency, source="web", client=client
    )
    page = preferences_page(session, settings, token)
    assert page is not None
    return changes, page


def choose_at_signup(
    session: Session, settings: Settings, *, email: str, topic_keys: Sequence[str],
    since: datetime, client: str = "",
) -> None:  # fmt: skip
    """The topics ticked on the subscribe form, for an address added by that very request
    (`since`: when it began) only: a form filled in with someone else's address never
    changes what they receive."""
    if not topic_keys:
        return
    sub = session.exec(
        select(Subscriber).where(Subscriber.email_key == address_key(email.strip()))
    ).first()
    if sub is None or sub.created_at < since or sub.status != SubscriberStatus.pending:
        return
    known = {t.key: t.name for t in list_topics(session, settings)}
    names = [known[k] for k in dict.fromkeys(topic_keys) if k in known]
    if names:
        set_preferences(session, settings, sub, topics=names, source="web", client=client)


def signup_topics(session: Session, settings: Settings) -> list[TopicInfo]:
    """The topics the subscribe page offers."""
    return list_topics(session, settings)
