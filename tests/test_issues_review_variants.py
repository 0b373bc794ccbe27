"""A review draft with subscribers who chose topics (issues/review.py with issues/variants.py):
the draft freezes the items only; when the approved draft starts sending, each subscriber's
delivery gets the variant for their topics at that moment, rendered from the items as frozen
in the draft (an edit after approval waits for the next issue)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .helpers.db import rows
from .helpers.smtp import SmtpServer

REVIEWER = "comms@partnership.example.org"


@pytest.fixture
def review_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    over = {"DIGEST_REVIEW": "required", "DIGEST_REVIEW_TO": REVIEWER}
    for k, v in over.items():
        monkeypatch.setenv(k, v)
    return {**env, **over}


def _add(cli, title: str, category: str, hours_ago: int) -> None:  # type: ignore[no-untyped-def]
    published = (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat()
    url = "https://example.org/n/" + title.lower().replace(" ", "-")
    r = cli("news", "add", "--title", title, "--url", url, "--category", category,
            "--summary", f"<p>About {title}.</p>", "--published", published)  # fmt: skip
    assert r.exit_code == 0, r.output


def test_an_approved_draft_sends_each_reader_their_variant(  # type: ignore[no-untyped-def]
    cli, review_env, smtp_server: SmtpServer
) -> None:
    _add(cli, "Neglect toolkit", "Procedures", 3)
    _add(cli, "Course in May", "Training", 2)
    assert cli("subscribers", "add", "all@example.net").exit_code == 0
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    assert "drafted for review" in r.output
    assert [m.rcpt_tos for m in smtp_server.messages] == [[REVIEWER]]
    assert rows(review_env, "SELECT count(*) FROM delivery") == [(0,)]
    # Between the draft and the approval: a reader who chose Training joins, and an editor
    # retitles an item (the draft keeps the title it froze).
    assert cli("subscribers", "add", "train@example.net", "--topic", "Training").exit_code == 0
    assert cli("news", "edit", "2", "--title", "Course in June").exit_code == 0
    assert cli("issues", "approve", "1", "--by", "Ana").exit_code == 0
    r = cli("send", "--scheduled")
    assert r.exit_code == 0, r.output
    by = smtp_server.by_rcpt()
    assert sorted(by) == sorted([REVIEWER, "all@example.net", "train@example.net"])
    text_all = by["all@example.net"][0].message.get_body(("plain",)).get_content()
    assert "Neglect toolkit" in text_all and "Course in May" in text_all
    train = by["train@example.net"][0].message
    text = train.get_body(("plain",)).get_content()
    html = train.get_body(("html",)).get_content()
    assert "Course in May" in text and "Course in May" in html  # as frozen in the draft
    assert "Course in June" not in text + html
    assert "Neglect toolkit" not in text + html  # not their topic
    assert rows(review_env, "SELECT topics FROM issue_variant") == [("Training",)]
    assert rows(
        review_env,
        "SELECT s.email, d.status, d.variant_id IS NOT NULL FROM delivery d "
        "JOIN subscriber s ON s.id = d.subscriber_id ORDER BY s.email",
    ) == [("all@example.net", "sent", 0), ("train@example.net", "sent", 1)]
