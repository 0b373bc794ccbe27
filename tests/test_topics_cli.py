"""`digest topics list/rename/describe` and the topics and frequency of `subscribers add/set/
list` (digest/topics.py): names matched whatever their spacing or capitals, unknown topics
refused with the known ones named, every change in the consent log (source cli)."""

from __future__ import annotations

import csv

from .helpers.db import count, rows


def _items(cli) -> None:
    for n, category in enumerate(["Procedures", " training ", "TRAINING", "Research", ""], 1):
        args = ["news", "add", "--title", f"Item {n}", "--url", f"https://example.org/n/{n}"]
        r = cli(*args, *(["--category", category] if category else []))
        assert r.exit_code == 0, r.output


def test_topics_list_counts_items_and_subscribers(cli, env) -> None:
    _items(cli)
    assert cli("subscribers", "add", "ana@example.org", "--topic", "Training").exit_code == 0
    assert cli("subscribers", "add", "bo@example.org").exit_code == 0
    r = cli("topics", "list")
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line.split()[1:3] for line in r.stdout.splitlines()[2:-1]}
    # shown as first written (trimmed), counted whatever the capitals
    assert lines == {"Procedures": ["1", "0"], "Research": ["1", "0"], "training": ["2", "1"]}
    assert "3 topics; 1 active subscriber chose none and get every topic." in r.stdout


def test_add_with_topics_and_frequency(cli, env, monkeypatch) -> None:
    _items(cli)
    monkeypatch.setenv("DIGEST_FREQUENCIES", "weekly,daily")
    r = cli("subscribers", "add", "ana@example.org", "--topic", "research",
            "--topic", "TRAINING", "--frequency", "daily")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "Added ana@example.org (active; Research, training, daily)."
    r = cli("subscribers", "list")
    assert "Research; training" in r.stdout and "daily" in r.stdout
    r = cli("subscribers", "list", "--format", "csv")
    (row,) = csv.DictReader(r.stdout.splitlines())
    assert (row["topics"], row["frequency"]) == ("Research; training", "daily")


def test_unknown_topic_and_frequency_are_refused(cli, env) -> None:
    _items(cli)
    r = cli("subscribers", "add", "ana@example.org", "--topic", "Gardening")
    assert r.exit_code == 2
    assert "Error: unknown topic: Gardening (topics: Procedures, Research, training)" in r.stderr
    r = cli("subscribers", "add", "ana@example.org", "--frequency", "daily")
    assert r.exit_code == 2
    assert "frequency 'daily' is not offered (frequencies: weekly)" in r.stderr
    assert "Traceback" not in r.output
    assert count(env, "SELECT count(*) FROM subscriber") == 0


def test_set_changes_and_logs(cli, env, monkeypatch) -> None:
    _items(cli)
    monkeypatch.setenv("DIGEST_FREQUENCIES", "weekly,daily")
    cli("subscribers", "add", "ana@example.org")
    r = cli(
        "subscribers", "set", "ANA@example.org", "--topic", "procedures", "--frequency", "daily"
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "ANA@example.org: topics: Procedures (was every topic)",
        "ANA@example.org: frequency: daily (was weekly)",
    ]
    r = cli("subscribers", "set", "ana@example.org", "--topic", "Procedures")
    assert "already receives Procedures, daily; nothing changed." in r.stdout
    r = cli("subscribers", "set", "ana@example.org", "--all-topics")
    assert r.stdout.strip() == "ana@example.org: topics: every topic (was Procedures)"
    assert count(env, "SELECT count(*) FROM subscriber_topic") == 0
    r = cli("subscribers", "set", "ana@example.org", "--all-topics", "--topic", "Research")
    assert r.exit_code == 2 and "not both" in r.stderr
    events = rows(env, "SELECT source, detail FROM subscriber_event ORDER BY id")
    assert events[1:] == [
        ("cli", "preferences: topics: Procedures (was every topic); frequency: daily (was weekly)"),
        ("cli", "preferences: topics: every topic (was Procedures)"),
    ]
    r = cli("subscribers", "set", "nobody@example.org", "--all-topics")
    assert r.exit_code != 0 and "no subscriber" in r.stderr


def test_rename_moves_items_sources_and_subscribers(cli, env) -> None:
    _items(cli)
    cli("subscribers", "add", "ana@example.org", "--topic", "Training", "--topic", "Research")
    cli("subscribers", "add", "bo@example.org", "--topic", "Research")
    cli("topics", "describe", "research", "Briefings for GPs.")
    r = cli("topics", "rename", "Research", "Training")  # a merge: Ana had both
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "Renamed Research to Training: 1 item, 0 sources, 1 subscriber."
    assert rows(env, "SELECT s.email, t.topic_key FROM subscriber_topic t JOIN subscriber s "
                "ON s.id = t.subscriber_id ORDER BY s.email") == [
        ("ana@example.org", "training"), ("bo@example.org", "training")
    ]  # fmt: skip
    r = cli("topics", "list")
    assert "Training" in r.stdout and "Briefings for GPs." in r.stdout
    assert "Research" not in r.stdout
    r = cli("topics", "rename", "Gardening", "Plants")
    assert r.exit_code == 2 and "no topic 'Gardening'" in r.stderr


def test_topics_setting_fixes_the_list_and_order(cli, env, monkeypatch) -> None:
    _items(cli)
    monkeypatch.setenv("DIGEST_TOPICS", "Training,Procedures")
    r = cli("topics", "list")
    assert [ln.split()[0] for ln in r.stdout.splitlines()[2:-1]] == ["Training", "Procedures"]
    r = cli("subscribers", "add", "ana@example.org", "--topic", "Research")
    assert r.exit_code == 2 and "unknown topic: Research" in r.stderr
    r = cli("topics", "rename", "Training", "Courses")
    assert r.exit_code == 2 and "not in the topics setting" in r.stderr


def test_frequencies_setting_is_checked_and_shown(cli, env, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_FREQUENCIES", "weekly,hourly")
    r = cli("topics", "list")
    assert r.exit_code == 3
    assert "setting 'frequencies' (env DIGEST_FREQUENCIES)" in r.stderr
    monkeypatch.setenv("DIGEST_FREQUENCIES", "daily,weekly")
    r = cli("config", "show")
    assert r.exit_code == 0, r.output
    assert any(
        ln.split()[:3] == ["frequencies", "daily,", "weekly"] for ln in r.stdout.splitlines()
    )
