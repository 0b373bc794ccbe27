"""What a subscriber receives, as staff (`subscribers add/set/list`) and the subscriber (the
preferences page) change it: the services over digest.topics and digest.subscribers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from digest.config import Settings
from digest.models import Subscriber, SubscriberStatus
from digest.subscribers import add_subscriber, get_subscriber, list_subscribers
from digest.topics import (
    Preferences,
    check_frequency,
    list_topics,
    preferences_of,
    resolve_topics,
    set_preferences,
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
