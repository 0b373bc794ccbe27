"""An issue with variants (issues/variants.py): each subscriber gets the items of their topics
(and the items without one), rendered once per variant; a subscriber none of whose topics is in
the issue is not mailed (delivery skipped, with the reason); subject and preheader describe the
reader's variant; the archive shows the whole issue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .helpers.db import rows
from .helpers.smtp import SmtpServer


def _news(cli, *items: tuple[str, str]) -> None:
    now = datetime.now(UTC)
    for n, (title, category) in enumerate(items, 1):
        slug = title.lower().replace(" ", "-")
        args = ["news", "add", "--title", title, "--url", f"https://example.org/n/{slug}",
                "--summary", f"<p>About {title}.</p>",
                "--published", (now - timedelta(hours=n)).isoformat()]  # fmt: skip
        r = cli(*args, *(["--category", category] if category else []))
        assert r.exit_code == 0, r.output


def _body(received) -> tuple[str, str]:
    msg = received.message
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def test_each_reader_gets_their_topics(cli, env, smtp_server: SmtpServer, client) -> None:
    _news(cli, ("Neglect toolkit", "Procedures"), ("Course in May", "Training"),
          ("Research briefing", "Research"))  # fmt: skip
    # a topic with an older item, so that it is a topic, but not in this issue
    cli("subscribers", "add", "all@example.net")
    cli("subscribers", "add", "train@example.net", "--topic", "Training")
    cli("subscribers", "add", "two@example.net", "--topic", "training", "--topic", "RESEARCH")
    cli("subscribers", "add", "two-b@example.net", "--topic", "Research", "--topic", "Training")
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    by = smtp_server.by_rcpt()
    assert sorted(by) == ["all@example.net", "train@example.net", "two-b@example.net",
                          "two@example.net"]  # fmt: skip
    text_all, _ = _body(by["all@example.net"][0])
    assert all(t in text_all for t in ("Neglect toolkit", "Course in May", "Research briefing"))
    text_train, html_train = _body(by["train@example.net"][0])
    assert "Course in May" in text_train and "Course in May" in html_train
    assert "Neglect toolkit" not in text_train + html_train
    assert "Research briefing" not in text_train + html_train
    text_two, _ = _body(by["two@example.net"][0])
    assert "Research briefing" in text_two and "Neglect toolkit" not in text_two
    # two variants (Training; Training + Research), each rendered once; the whole issue is
    # the issue's own
    variants = rows(env, "SELECT positions, topics FROM issue_variant ORDER BY id")
    assert sorted(t for _, t in variants) == ["Training", "Training, Research"]
    assert rows(env, "SELECT count(DISTINCT variant_id) FROM delivery "
                "WHERE variant_id IS NOT NULL") == [(2,)]  # fmt: skip
    # `digest issues show` lists them, with the whole issue and the deliveries of each
    shown = cli("issues", "show", "1")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.split("Variants (2), by the readers' topics:\n", 1)[1].splitlines()
    assert lines[0].split() == ["topics", "items", "deliveries"]
    assert " ".join(lines[2].split()) == "(the whole issue) all 1"
    assert sorted(" ".join(line.split()) for line in lines[3:5]) == [
        "Training 2 1", "Training, Research 2, 3 2"]  # fmt: skip
    # the archive shows the whole issue
    page = client.get("/archive/1")
    assert page.status_code == 200
    assert all(t in page.text for t in ("Neglect toolkit", "Course in May", "Research briefing"))


def test_subject_and_preheader_describe_the_variant(cli, env, smtp_server, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_SUBJECT", "{{ name }}: {{ count }} items, {{ top_title }}")
    _news(cli, ("Neglect toolkit", "Procedures"), ("Course in May", "Training"),
          ("Course in June", "Training"))  # fmt: skip
    cli("subscribers", "add", "all@example.net")
    cli("subscribers", "add", "train@example.net", "--topic", "Training")
    assert cli("send", "--yes").exit_code == 0
    by = smtp_server.by_rcpt()
    assert by["all@example.net"][0].message["Subject"] == (
        "Safeguarding News: 3 items, Neglect toolkit"
    )
    msg = by["train@example.net"][0].message
    assert msg["Subject"] == "Safeguarding News: 2 items, Course in May"
    html = msg.get_body(("html",)).get_content()
    assert "Course in May; Course in June" in html  # the preheader
    assert "Neglect toolkit" not in html


def test_reader_whose_topics_are_absent_is_skipped(cli, env, smtp_server: SmtpServer) -> None:
    _news(cli, ("Old research", "Research"))
    cli("subscribers", "add", "first@example.net")
    assert cli("send", "--yes").exit_code == 0  # issue 1: the research item
    _news(cli, ("Neglect toolkit", "Procedures"), ("Course", "Training"))
    cli("subscribers", "add", "research@example.net", "--topic", "Research")
    cli("subscribers", "add", "train@example.net", "--topic", "Training")
    smtp_server.messages.clear()
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert sorted(smtp_server.by_rcpt()) == ["first@example.net", "train@example.net"]
    assert rows(env, "SELECT s.email, d.status, d.last_reply FROM delivery d JOIN subscriber s "
                "ON s.id = d.subscriber_id WHERE d.issue_id = 2 AND d.status = 'skipped'") == [
        ("research@example.net", "skipped", "none of their topics (Research) is in this issue")
    ]  # fmt: skip
    assert rows(env, "SELECT status FROM issue WHERE number = 2") == [("sent",)]
    r = cli("issues", "show", "2")
    assert r.exit_code == 0 and "skipped" in r.stdout


def test_items_without_a_topic_go_to_everyone(cli, env, smtp_server: SmtpServer) -> None:
    _news(cli, ("General notice", ""), ("Course in May", "Training"), ("Toolkit", "Procedures"))
    cli("subscribers", "add", "proc@example.net", "--topic", "Procedures")
    assert cli("send", "--yes").exit_code == 0
    text, _ = _body(smtp_server.by_rcpt()["proc@example.net"][0])
    assert "General notice" in text and "Toolkit" in text and "Course in May" not in text


def test_dry_run_writes_each_reader_their_variant(cli, env, smtp_server, workdir) -> None:
    import email
    from email import policy

    _news(cli, ("Neglect toolkit", "Procedures"), ("Course in May", "Training"))
    cli("news", "add", "--title", "Old research", "--url", "https://example.org/old",
        "--category", "Research", "--published", "2020-01-01")  # fmt: skip
    cli("subscribers", "add", "all@example.net")
    cli("subscribers", "add", "train@example.net", "--topic", "Training")
    cli("subscribers", "add", "research@example.net", "--topic", "Research")
    r = cli("send", "--dry-run", "--out", "outbox")
    assert r.exit_code == 0, r.output
    assert "Dry run: wrote 2 messages to outbox/" in r.stdout  # research@ would be skipped
    texts = {}
    for path in (workdir / "outbox").glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        texts[msg["To"]] = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert sorted(texts) == ["all@example.net", "train@example.net"]
    assert "Neglect toolkit" in texts["all@example.net"]
    assert "Course in May" in texts["train@example.net"]
    assert "Neglect toolkit" not in texts["train@example.net"]
    assert rows(env, "SELECT count(*) FROM issue") == [(0,)]
    assert smtp_server.messages == []
