"""The preferences page (web/preferences.py): reached from the "Choose what you receive" link
of a real digest; GET shows the topics (with descriptions) and frequencies and changes
nothing; POST saves and says what changed, in the consent log with source web; a tampered
token is a 404 that changes nobody; the subscribe page offers the topics."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.tokens import make_token

from .helpers.newsletter import SECRET
from .helpers.smtp import SmtpServer
from .helpers.web import BASE, main_text, path_of, rows, snapshot, uid_of

PREFS_LINK = re.compile(rf"Choose what you receive: ({re.escape(BASE)}/preferences/\S+)")


def _news(cli) -> None:
    for n, category in enumerate(["Procedures", "Training", "Research"], 1):
        r = cli("news", "add", "--title", f"{category} item", "--url", f"https://example.org/{n}",
                "--category", category)  # fmt: skip
        assert r.exit_code == 0, r.output
    cli("topics", "describe", "Training", "Course dates and places for all staff.")


def _prefs_path(engine: Engine, email: str) -> str:
    return f"/preferences/{make_token(SECRET.encode(), 'preferences', uid_of(engine, email))}"


def test_the_link_in_a_digest_opens_the_page(
    cli, env, engine: Engine, smtp_server: SmtpServer, client: TestClient
) -> None:
    _news(cli)
    cli("subscribers", "add", "ana@example.org")
    assert cli("send", "--yes").exit_code == 0
    msg = smtp_server.by_rcpt()["ana@example.org"][0].message
    text = msg.get_body(("plain",)).get_content()
    (link,) = PREFS_LINK.findall(text)
    html = msg.get_body(("html",)).get_content()
    assert f'href="{link}"' in html and "Choose what you receive</a>" in html
    before = snapshot(engine)
    page = client.get(path_of(link))
    assert page.status_code == 200
    body = main_text(page.text)
    assert "ana@example.org" in body
    for name in ("Procedures", "Research", "Training"):
        assert f">{name}</label>" in body
    assert "Course dates and places for all staff." in body
    assert "<fieldset" in body and "<legend>Topics</legend>" in body
    assert 'id="scope-all" name="scope" value="all" checked' in body
    assert ">Unsubscribe</button>" in body
    assert "How often" not in body  # one frequency offered: no choice to show
    assert snapshot(engine) == before  # a GET changes nothing
    assert page.headers["cache-control"] == "no-store"


def test_post_saves_and_says_what_changed(cli, env, engine: Engine, client, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_FREQUENCIES", "weekly,daily")
    _news(cli)
    cli("subscribers", "add", "ana@example.org")
    from digest.config_load import load_settings
    from digest.web.app import create_app

    with TestClient(create_app(load_settings().settings, engine=engine)) as web:
        path = _prefs_path(engine, "ana@example.org")
        page = web.get(path)
        assert "<legend>How often</legend>" in page.text and "Every day with news" in page.text
        keys = dict(
            re.findall(r'value="([^"]+)"[^>]*>\s*<label for="topic-\d+">([^<]+)<', page.text)
        )
        training = next(k for k, v in keys.items() if v == "Training")
        r = web.post(path, data={"scope": "some", "topic": [training], "frequency": "daily"})
        assert r.status_code == 200
        assert "topics: Training (was every topic)" in r.text
        assert "frequency: daily (was weekly)" in r.text
        assert f'value="{training}" checked' in r.text
        assert rows(engine, "SELECT topic_key FROM subscriber_topic") == [("training",)]
        assert rows(engine, "SELECT frequency FROM subscriber") == [("daily",)]
        (event,) = rows(engine, "SELECT source, detail FROM subscriber_event "
                        "WHERE detail LIKE 'preferences:%'")  # fmt: skip
        assert event == ("web", "preferences: topics: Training (was every topic); "
                         "frequency: daily (was weekly)")  # fmt: skip
        # some, with nothing ticked: refused, nothing changes
        r = web.post(path, data={"scope": "some", "frequency": "daily"})
        assert r.status_code == 400 and "tick at least one topic" in r.text
        assert rows(engine, "SELECT topic_key FROM subscriber_topic") == [("training",)]
        # back to every topic
        r = web.post(path, data={"scope": "all", "frequency": "weekly"})
        assert "topics: every topic (was Training)" in r.text
        assert rows(engine, "SELECT count(*) FROM subscriber_topic") == [(0,)]
        r = web.post(path, data={"scope": "all", "frequency": "hourly"})
        assert r.status_code == 400 and "not offered" in r.text


def test_a_tampered_token_changes_nobody(cli, env, engine: Engine, client) -> None:
    _news(cli)
    cli("subscribers", "add", "ana@example.org")
    path = _prefs_path(engine, "ana@example.org")
    unsubscribe = f"/unsubscribe/{make_token(SECRET.encode(), 'unsubscribe', uid_of(engine, 'ana@example.org'))}"
    before = snapshot(engine)
    for bad in (
        path[:-2] + ("AA" if not path.endswith("AA") else "BB"),
        path + "x",
        "/preferences/nonsense",
        unsubscribe.replace("/unsubscribe/", "/preferences/"),
    ):
        assert client.get(bad).status_code == 404, bad
        r = client.post(bad, data={"scope": "all", "frequency": "weekly"})
        assert r.status_code == 404, bad
    assert snapshot(engine) == before
    assert rows(engine, "SELECT count(*) FROM subscriber_topic") == [(0,)]


def test_subscribe_page_offers_the_topics(cli, env, engine: Engine, client) -> None:
    _news(cli)
    page = client.get("/subscribe")
    assert "<legend>Topics" in page.text and ">Training</label>" in page.text
    keys = dict(re.findall(r'value="([^"]+)"[^>]*>\s*<label for="topic-\d+">([^<]+)<', page.text))
    research = next(k for k, v in keys.items() if v == "Research")
    r = client.post("/subscribe", data={"email": "new@example.org", "topic": [research]})
    assert r.status_code == 200
    assert rows(engine, "SELECT s.status, t.topic_key FROM subscriber s JOIN subscriber_topic t "
                "ON t.subscriber_id = s.id") == [("pending", "research")]  # fmt: skip
    # the form filled in with someone else's address never changes their topics
    cli("subscribers", "add", "ana@example.org")
    client.post("/subscribe", data={"email": "ana@example.org", "topic": [research]})
    assert rows(engine, "SELECT count(*) FROM subscriber_topic t JOIN subscriber s "
                "ON s.id = t.subscriber_id WHERE s.email = 'ana@example.org'") == [(0,)]  # fmt: skip
