"""Real DSNs from a real MTA: a private Postfix accepts our mail, its pipe transport fails,
and it returns a DSN to the VERP envelope sender; those DSNs are read back and acted on."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import smtplib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.db import make_engine
from digest.inbound.classify import classify
from digest.models import InboundKind

from .helpers.postfix import Postfix, start_postfix
from .helpers.reports import KEY, Sent
from .helpers.web import rows as engine_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    with start_postfix() as server:
        yield server


def _send(postfix: Postfix, sent: Sent) -> None:
    body = sent.original_headers(return_path=False) + "\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.sendmail(sent.return_path, [sent.email], body.encode())


def test_postfix_dsns_are_permanent_or_temporary_and_name_the_delivery(postfix: Postfix) -> None:
    before = len(list((postfix.maildir / "new").glob("*"))) if postfix.maildir.exists() else 0
    gone = Sent(3, "0123456789abcdef", "a" * 32, "gone@dead.example")
    full = Sent(3, "0123456789abcdef", "b" * 32, "full@dead.example")
    _send(postfix, gone)
    _send(postfix, full)
    paths = postfix.wait_for_mail(before + 2)[before:]
    found = {}
    for path in paths:
        raw = path.read_bytes()
        assert b"Postfix" in raw and b"multipart/report" in raw  # a real Postfix DSN
        c = classify(raw, key=KEY)
        found[c.refs[0].subscriber_uid] = c
    permanent, temporary = found["a" * 32], found["b" * 32]
    assert permanent.kind == temporary.kind == InboundKind.bounce
    assert (permanent.permanent, permanent.status) == (True, "5.1.1")
    assert "no such person" in permanent.diagnostic
    assert temporary.permanent is False and temporary.status.startswith("4.")
    assert permanent.refs[0].issue_number == 3
    assert permanent.original_ids == (("0123456789abcdef", "a" * 32),)


def _seed(cli, emails: list[str], items: int = 2) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    for email in emails:
        r = cli("subscribers", "add", email)
        assert r.exit_code == 0, r.output
    for i in range(items):
        r = cli("news", "add", "--title", f"Item {i} {now:%H%M%S%f}",
                "--url", f"https://example.org/n/{now:%H%M%S%f}/{i}",
                "--summary", f"<p>Summary {i}</p>",
                "--published", (now - timedelta(minutes=i + 1)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output


def rows(env: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    try:
        return engine_rows(engine, sql)
    finally:
        engine.dispose()


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_end_to_end_send_bounce_fetch_and_the_next_issue_leaves_them_out(
    cli, env: dict[str, str], postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIGEST_SMTP_URL", postfix.url)
    monkeypatch.setenv("DIGEST_BOUNCE_ADDRESS", "bounces@partnership.example.org")
    before = len(list((postfix.maildir / "new").glob("*"))) if postfix.maildir.exists() else 0
    people = ["ana@ok.example", "ben@ok.example", "gone1@dead.example", "gone2@dead.example",
              "full@dead.example"]  # fmt: skip
    _seed(cli, people)
    log_start = len(postfix.log())
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Issue 1: 5 sent, 0 failed" in r.stdout  # the relay accepted every message
    # VERP: every delivery had its own envelope sender, bounces+TOKEN@
    logged = postfix.log()[log_start:]
    senders = set(re.findall(r"from=<(bounces\+[0-9a-z-]+@partnership\.example\.org)>", logged))
    assert len(senders) >= 5
    # Only this test's DSNs: those sent back to one of this send's envelope senders. The
    # module's Postfix is shared, and a Maildir's names sort by second, then by inode, so the
    # other test's reports can sort after ours: pick ours by content, never by position.
    deadline = time.monotonic() + 30
    while True:
        found = postfix.wait_for_mail(before + 3)
        new = [p for p in found if any(s in p.read_text(errors="replace") for s in senders)]
        if len(new) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(new) == 3
    mailbox_copy = postfix.root / "fetch-me"
    for sub in ("new", "cur", "tmp"):
        (mailbox_copy / sub).mkdir(parents=True)
    for path in new:  # only this test's DSNs (the module's Postfix is shared)
        shutil.copy(path, mailbox_copy / "new" / path.name)
    snapshot = _tree(mailbox_copy)
    r = cli("inbox", "fetch", str(mailbox_copy), "--verbose")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith(
        "3 read: 3 bounces (2 permanent, 1 temporary), 0 complaints, 0 unsubscribes, "
        "0 auto-replies ignored, 0 for a person, 0 already seen"
    )
    assert "bounce gone1@dead.example (status changed)" in r.stdout
    statuses = dict(rows(env, "SELECT email, status FROM subscriber"))
    assert statuses == {
        "ana@ok.example": "active", "ben@ok.example": "active", "gone1@dead.example": "bounced",
        "gone2@dead.example": "bounced", "full@dead.example": "active",
    }  # fmt: skip
    [(detail,)] = rows(
        env,
        "SELECT e.detail FROM subscriber_event e JOIN subscriber s ON s.id = e.subscriber_id "
        "WHERE s.email = 'gone1@dead.example' AND e.status = 'bounced'",
    )
    assert "5.1.1" in detail and "no such person" in detail
    # idempotent, and nothing in the mailbox changed
    r = cli("inbox", "fetch", str(mailbox_copy))
    assert r.stdout.strip().endswith("0 for a person, 3 already seen")
    assert _tree(mailbox_copy) == snapshot
    r = cli("issues", "show", "1")
    assert "Bounces: 2 permanent, 1 temporary; complaints: 0" in r.stdout
    r = cli("bounces", "list", "--format", "json")
    events = json.loads(r.stdout)
    assert sorted((e["email"], e["kind"], e["score_after"]) for e in events) == [
        ("full@dead.example", "temporary", 0.25),
        ("gone1@dead.example", "permanent", 1.0),
        ("gone2@dead.example", "permanent", 1.0),
    ]
    # the next issue leaves the bounced subscribers out
    _seed(cli, [])
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    assert "Issue 2: 3 sent" in r.stdout
    sent_to = rows(
        env,
        "SELECT s.email FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id "
        "JOIN issue i ON i.id = d.issue_id WHERE i.number = 2 ORDER BY s.email",
    )
    assert [e for (e,) in sent_to] == ["ana@ok.example", "ben@ok.example", "full@dead.example"]
