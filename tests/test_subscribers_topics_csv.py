"""The topics (names, ';' between) and frequency columns of `subscribers export` and `import`:
a round trip into a fresh database keeps every subscriber's choice; a row naming an unknown
topic or frequency is rejected with its line and reason, the others are imported."""

from __future__ import annotations

import csv
from pathlib import Path

from digest.db import make_engine, upgrade

from .helpers.db import count, rows


def _items(cli) -> None:
    for n, category in enumerate(["Procedures", "Training", "Research"], 1):
        r = cli("news", "add", "--title", f"Item {n}", "--url", f"https://example.org/n/{n}",
                "--category", category)  # fmt: skip
        assert r.exit_code == 0, r.output


def test_round_trip_keeps_topics_and_frequency(cli, env, monkeypatch, workdir: Path) -> None:
    monkeypatch.setenv("DIGEST_FREQUENCIES", "weekly,daily")
    _items(cli)
    cli("subscribers", "add", "ana@example.org", "--topic", "Training", "--topic", "Research",
        "--frequency", "daily")  # fmt: skip
    cli("subscribers", "add", "bo@example.org")
    cli("subscribers", "add", "cy@example.org", "--topic", "procedures")
    out = workdir / "list.csv"
    r = cli("subscribers", "export", str(out))
    assert r.exit_code == 0, r.output
    exported = {row["email"]: (row["topics"], row["frequency"])
                for row in csv.DictReader(out.open(encoding="utf-8"))}  # fmt: skip
    assert exported == {
        "ana@example.org": ("Research; Training", "daily"),
        "bo@example.org": ("", "weekly"),
        "cy@example.org": ("Procedures", "weekly"),
    }
    # a fresh database (with its news items) reads it back as it was
    fresh = f"sqlite:///{workdir / 'fresh.db'}"
    monkeypatch.setenv("DIGEST_DATABASE_URL", fresh)
    engine = make_engine(fresh)
    upgrade(engine)
    engine.dispose()
    _items(cli)
    r = cli("subscribers", "import", str(out))
    assert r.exit_code == 0, r.output
    assert "Imported 3 subscribers" in r.stdout
    again = workdir / "again.csv"
    cli("subscribers", "export", str(again))
    assert (
        again.read_text(encoding="utf-8").splitlines()[0]
        == out.read_text(encoding="utf-8").splitlines()[0]
    )
    back = {row["email"]: (row["topics"], row["frequency"])
            for row in csv.DictReader(again.open(encoding="utf-8"))}  # fmt: skip
    assert back == exported


def test_unknown_topic_rejects_only_that_row(cli, env, workdir: Path) -> None:
    _items(cli)
    f = workdir / "people.csv"
    f.write_text(
        "email,name,topics,frequency\n"
        "ana@example.org,Ana,training;RESEARCH,weekly\n"
        "bo@example.org,Bo,Gardening,\n"
        "cy@example.org,Cy,,daily\n"
        "di@example.org,Di,,\n",
        encoding="utf-8",
    )
    r = cli("subscribers", "import", str(f))
    assert r.exit_code == 1
    assert "Imported 2 subscribers; skipped 0 already on the list; rejected 2." in r.stdout
    assert "line 3: bo@example.org: unknown topic: Gardening" in r.output
    assert "line 4: cy@example.org: frequency 'daily' is not offered" in r.output
    assert rows(env, "SELECT s.email, t.topic_key FROM subscriber_topic t JOIN subscriber s "
                "ON s.id = t.subscriber_id ORDER BY t.topic_key") == [
        ("ana@example.org", "research"), ("ana@example.org", "training")
    ]  # fmt: skip
    assert count(env, "SELECT count(*) FROM subscriber") == 2
    # the choice from the file is in the consent log, as the import made it
    assert rows(env, "SELECT e.source, e.detail FROM subscriber_event e JOIN subscriber s "
                "ON s.id = e.subscriber_id WHERE e.detail LIKE 'preferences:%'") == [
        ("import", "preferences: topics: Research, Training; frequency: weekly")
    ]  # fmt: skip
