"""Topics and frequency: what each subscriber chose to receive (issue #15).

A topic is a category of news items. A subscriber has a set of topics (rows of
subscriber_topic, by key); none means every topic, which is what everyone had before. Every
comparison of a topic goes through `category_key`, so names match whatever their spacing or
capitals, and a topic is shown as it was first written (or as the `topics` setting, or a
rename, writes it). Every change of a subscriber's choice is written to the consent log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from digest.config import Settings
from digest.errors import UsageError
from digest.models import (
    NewsItem,
    Source,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    SubscriberTopic,
    Topic,
    utcnow,
)
from digest.news.categories import category_key  # a topic is a category: one key for both

MAX_TOPIC = 100  # the length of a category


@dataclass(frozen=True)
class TopicInfo:
    key: str
    name: str
    description: str = ""
    items: int = 0  # news items with this category
    subscribers: int = 0  # active subscribers who chose it


def item_categories(session: Session) -> dict[str, tuple[str, int]]:
    """key -> (name as first written, item count) of every category news items have."""
    rows = session.exec(
        select(NewsItem.category, func.count(), func.min(NewsItem.id))
        .where(NewsItem.category != "")
        .group_by(NewsItem.category)
    ).all()
    found: dict[str, tuple[str, int, int]] = {}
    for name, n, first in sorted(rows, key=lambda r: r[2] or 0):
        key = category_key(name)
        if key not in found:
            found[key] = (" ".join(name.split()), n, first or 0)
        else:
            shown, total, at = found[key]
            found[key] = (shown, total + n, at)
    return {k: (v[0], v[1]) for k, v in found.items()}


def list_topics(session: Session, settings: Settings) -> list[TopicInfo]:
    """Every topic a subscriber may choose, in order: the `topics` setting's list as it is, or
    else every category of the items (and every described topic), by name."""
    items = item_categories(session)
    described = {t.key: t for t in session.exec(select(Topic)).all()}
    chosen = dict(
        session.exec(
            select(SubscriberTopic.topic_key, func.count())
            .join(Subscriber, col(Subscriber.id) == col(SubscriberTopic.subscriber_id))
            .where(Subscriber.status == SubscriberStatus.active)
            .group_by(SubscriberTopic.topic_key)
        ).all()
    )
    if settings.topics is not None:
        names = {category_key(n): n for n in settings.topics}
    else:
        names = {k: v[0] for k, v in items.items()}
        for key, t in described.items():
            names.setdefault(key, t.name)
        names = dict(sorted(names.items(), key=lambda kv: kv[1].casefold()))
    out = []
    for key, name in names.items():
        row = described.get(key)
        shown = name if settings.topics is not None or row is None else row.name
        out.append(TopicInfo(key, shown, row.description if row else "",
                             items.get(key, ("", 0))[1], chosen.get(key, 0)))  # fmt: skip
    return out


def everything_count(session: Session) -> int:
    """Active subscribers who chose no topic: they get every one."""
    has_topics = select(SubscriberTopic.id).where(
        col(SubscriberTopic.subscriber_id) == col(Subscriber.id)
    )
    return session.exec(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.status == SubscriberStatus.active, ~has_topics.exists())
    ).one()


def offered_keys(settings: Settings) -> frozenset[str] | None:
    """The topic keys of the `topics` setting; None: every category is a topic."""
    return frozenset(category_key(n) for n in settings.topics) if settings.topics else None


def resolve_topics(known: list[TopicInfo], names: Iterable[str]) -> list[str]:
    """The keys of the topics `names` (of `known`, from list_topics); UsageError naming the
    unknown ones and the known."""
    by_key = {t.key: t for t in known}
    keys, unknown = [], []
    for name in names:
        key = category_key(name)
        if key in by_key:
            if key not in keys:
                keys.append(key)
        else:
            unknown.append(" ".join(name.split()) or repr(name))
    if unknown:
        listed = ", ".join(t.name for t in known) or "none yet"
        raise UsageError(
            f"unknown topic{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} "
            f"(topics: {listed})",
            hint="`digest topics list` shows the topics; a topic is a category of news items.",
        )
    return keys


def check_frequency(settings: Settings, frequency: str) -> str:
    value = frequency.strip().lower()
    if value not in settings.offered_frequencies:
        raise UsageError(
            f"frequency {frequency!r} is not offered (frequencies: "
            f"{', '.join(settings.offered_frequencies)})",
            hint='Offer it with the setting frequencies = ["weekly", "daily"].',
        )
    return value


def topic_keys_of(session: Session, subscriber_ids: Sequence[int]) -> dict[int, frozenset[str]]:
    """Each subscriber's chosen topic keys (absent: every topic)."""
    out: dict[int, set[str]] = {}
    for start in range(0, len(subscriber_ids), 500):
        chunk = subscriber_ids[start : start + 500]
        for sid, key in session.exec(
            select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_key).where(
                col(SubscriberTopic.subscriber_id).in_(chunk)
            )
        ).all():
            out.setdefault(sid, set()).add(key)
    return {sid: frozenset(keys) for sid, keys in out.items()}


def all_topic_keys(session: Session) -> dict[int, frozenset[str]]:
    """Every subscriber's chosen topic keys, in one read (those with none are absent)."""
    out: dict[int, set[str]] = {}
    for sid, key in session.exec(
        select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_key)
    ).all():
        out.setdefault(sid, set()).add(key)
    return {sid: frozenset(keys) for sid, keys in out.items()}


def topic_names(keys: Iterable[str], known: list[TopicInfo]) -> list[str]:
    """The shown names of `keys`, in the topics' order (a key no longer known: as it is)."""
    keys = set(keys)
    named = [t.name for t in known if t.key in keys]
    return named + sorted(keys - {t.key for t in known})


@dataclass(frozen=True)
class Preferences:
    topics: list[str]  # shown names; [] means every topic
    frequency: str


def preferences_of(session: Session, settings: Settings, sub: Subscriber) -> Preferences:
    known = list_topics(session, settings)
    keys = topic_keys_of(session, [sub.id or 0]).get(sub.id or 0, frozenset())
    return Preferences(topic_names(keys, known), effective_frequency(settings, sub.frequency))


def effective_frequency(settings: Settings, frequency: str) -> str:
    """A subscriber's frequency as it is sent: one that is not offered (any more) is the default."""
    offered = settings.offered_frequencies
    return frequency if frequency in offered else offered[0]


def set_preferences(
    session: Session,
    settings: Settings,
    sub: Subscriber,
    *,
    topics: Sequence[str] | None = None,
    frequency: str | None = None,
    source: str,
    client: str = "",
) -> list[str]:
    """Change what `sub` receives: `topics` (names; [] for every topic, None to leave them)
    and `frequency`. Returns what changed, in words, also written to the consent log."""
    assert sub.id is not None
    known = list_topics(session, settings)
    before = preferences_of(session, settings, sub)
    changes: list[str] = []
    if topics is not None:
        keys = resolve_topics(known, topics)
        old = topic_keys_of(session, [sub.id]).get(sub.id, frozenset())
        if set(keys) != set(old):
            session.execute(
                sa.delete(SubscriberTopic).where(col(SubscriberTopic.subscriber_id) == sub.id)
            )
            for key in keys:
                session.add(SubscriberTopic(subscriber_id=sub.id, topic_key=key))
            after = topic_names(keys, known)
            changes.append(f"topics: {_words(after)} (was {_words(before.topics)})")
    if frequency is not None:
        value = check_frequency(settings, frequency)
        if value != before.frequency or value != sub.frequency:
            sub.frequency = value
            session.add(sub)
            if value != before.frequency:
                changes.append(f"frequency: {value} (was {before.frequency})")
    if changes:
        detail = "preferences: " + "; ".join(changes)
        session.add(SubscriberEvent.of(sub, utcnow(), source, detail, client))
    session.flush()
    return changes


def _words(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "every topic"


def _find(known: list[TopicInfo], name: str) -> TopicInfo:
    key = category_key(name)
    for t in known:
        if t.key == key:
            return t
    listed = ", ".join(t.name for t in known) or "none yet"
    raise UsageError(
        f"no topic {' '.join(name.split())!r} (topics: {listed})",
        hint="`digest topics list` shows the topics.",
    )


def describe_topic(session: Session, settings: Settings, name: str, text: str) -> TopicInfo:
    """Give a topic the sentence the preferences page shows under it ('' removes it)."""
    topic = _find(list_topics(session, settings), name)
    text = " ".join(text.split())
    if len(text) > 500:
        raise UsageError(f"the description is {len(text)} characters; keep it under 500")
    row = session.exec(select(Topic).where(Topic.key == topic.key)).first()
    row = row or Topic(key=topic.key, name=topic.name)
    row.description = text
    session.add(row)
    session.flush()
    return TopicInfo(topic.key, topic.name, text, topic.items, topic.subscribers)


@dataclass(frozen=True)
class Renamed:
    old: str
    new: str
    items: int
    sources: int
    subscribers: int


_Categorised = TypeVar("_Categorised", NewsItem, Source)


def _recategorise(session: Session, model: type[_Categorised], key: str, new_name: str) -> int:
    """Give the rows of `model` whose category is the topic `key` the category `new_name`;
    how many there were (categories are compared by their key)."""
    n = 0
    for row in session.exec(select(model).where(model.category != "")).all():
        if category_key(row.category) == key:
            row.category = new_name
            session.add(row)
            n += 1
    return n


def rename_topic(session: Session, settings: Settings, old: str, new: str) -> Renamed:
    """Rename a topic everywhere it is named: the items and feed sources with that category,
    the subscribers who chose it (merged if they had both) and its description. Issues
    already made keep their frozen copy."""
    known = list_topics(session, settings)
    topic = _find(known, old)
    new_name = " ".join(new.split())
    new_key = category_key(new_name)
    if not new_key or len(new_name) > MAX_TOPIC:
        raise UsageError(f"a topic name is 1 to {MAX_TOPIC} characters")
    if settings.topics is not None and new_key not in offered_keys(settings):  # type: ignore[operator]
        raise UsageError(
            f"{new_name!r} is not in the topics setting",
            hint="Add it to `topics` in digest.toml first: that list fixes the topics.",
        )
    items = _recategorise(session, NewsItem, topic.key, new_name)
    sources = _recategorise(session, Source, topic.key, new_name)
    moved = 0
    if new_key != topic.key:
        both = select(SubscriberTopic.subscriber_id).where(SubscriberTopic.topic_key == new_key)
        session.execute(
            sa.delete(SubscriberTopic).where(
                col(SubscriberTopic.topic_key) == topic.key,
                col(SubscriberTopic.subscriber_id).in_(both),
            )
        )
        result = session.execute(
            sa.update(SubscriberTopic)
            .where(col(SubscriberTopic.topic_key) == topic.key)
            .values(topic_key=new_key)
        )
        moved = int(result.rowcount or 0)  # type: ignore[attr-defined]
    row = session.exec(select(Topic).where(Topic.key == topic.key)).first()
    target = session.exec(select(Topic).where(Topic.key == new_key)).first()
    if row is not None and target is not None and target is not row:
        target.description = target.description or row.description
        session.delete(row)
        row = target
    if row is None:
        row = target or Topic(key=new_key, name=new_name)
    row.key, row.name = new_key, new_name
    session.add(row)
    session.flush()
    return Renamed(topic.name, new_name, items, sources, moved)


def topics_text(session: Session, settings: Settings, subs: Sequence[Subscriber]) -> dict[int, str]:
    """Each subscriber's topics as the CSV column writes them: names, `;` between ('' : every
    topic)."""
    known = list_topics(session, settings)
    keys = (
        all_topic_keys(session)
        if len(subs) > 500
        else topic_keys_of(session, [s.id for s in subs if s.id is not None])
    )
    return {sid: "; ".join(topic_names(k, known)) for sid, k in keys.items()}


class PreferenceColumns:
    """The `topics` (names, `;` between) and `frequency` columns of an imported row."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.settings = settings
        self.known = list_topics(session, settings)

    def parse(self, values: dict[str, str]) -> tuple[list[str], str | None]:
        """(topic keys, frequency or None); ValueError saying what is wrong with the row."""
        names = [n for n in values.get("topics", "").split(";") if n.strip()]
        frequency = values.get("frequency", "").strip().lower() or None
        try:
            keys = resolve_topics(self.known, names)
            if frequency is not None:
                check_frequency(self.settings, frequency)
        except UsageError as exc:
            raise ValueError(f"{values.get('email', '').strip()}: {exc.message}") from None
        return keys, frequency

    def apply(
        self, session: Session, sub: Subscriber, parsed: tuple[list[str], str | None]
    ) -> None:
        """A new subscriber's topics and frequency from the file, in the consent log too."""
        keys, frequency = parsed
        assert sub.id is not None
        for key in keys:
            session.add(SubscriberTopic(subscriber_id=sub.id, topic_key=key))
        if frequency is not None:
            sub.frequency = frequency
            session.add(sub)
        if keys or (frequency and frequency != self.settings.offered_frequencies[0]):
            chosen = _words(topic_names(keys, self.known))
            detail = f"preferences: topics: {chosen}; frequency: {sub.frequency}"
            session.add(SubscriberEvent.of(sub, utcnow(), "import", detail))
        session.flush()
