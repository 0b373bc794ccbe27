"""Helpers for the web tests: a real uvicorn server on a free loopback port, links from
received mail, a subscriber's state, and a snapshot of everything a request could change."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
import uvicorn
from sqlalchemy.engine import Engine

from digest.demo import free_port
from digest.tokens import make_token

from .db import rows
from .newsletter import SECRET
from .smtp import Received

BASE = "https://news.partnership.example.org"
CONFIRM_LINK = re.compile(r"https?://[^\s\"<>]+/confirm/[A-Za-z0-9_.\-]+")


@contextmanager
def live_server(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve `app` with a real uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def confirm_link(message: Received) -> str:
    """The confirmation link in the plain-text part of a received confirmation email."""
    text = message.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    links = CONFIRM_LINK.findall(text)
    assert len(links) == 1, text
    return str(links[0])


def path_of(url: str) -> str:
    return urlsplit(url).path


def snapshot(engine: Engine) -> tuple[list[tuple[Any, ...]], ...]:
    """Every row a web request could change: subscribers, their consent log, suppressions."""
    with engine.connect() as c:
        return tuple(
            [tuple(r) for r in c.execute(sa.text(sql))]
            for sql in (
                "SELECT * FROM subscriber ORDER BY id",
                "SELECT * FROM subscriber_event ORDER BY id",
                "SELECT * FROM suppression ORDER BY id",
                "SELECT * FROM delivery ORDER BY id",
            )
        )


def uid_of(engine: Engine, email: str) -> str:
    return str(
        rows(engine, "SELECT uid FROM subscriber WHERE lower(email) = lower(:e)", e=email)[0][0]
    )


def status_of(engine: Engine, email: str) -> tuple[Any, ...]:
    return rows(
        engine,
        "SELECT status, status_source FROM subscriber WHERE lower(email) = lower(:e)",
        e=email,
    )[0]


def events_of(engine: Engine, email: str) -> list[tuple[Any, ...]]:
    return rows(
        engine,
        "SELECT e.status, e.source, e.detail FROM subscriber_event e "
        "JOIN subscriber s ON s.id = e.subscriber_id "
        "WHERE lower(s.email) = lower(:e) ORDER BY e.id",
        e=email,
    )


def unsubscribe_path(engine: Engine, email: str) -> str:
    return f"/unsubscribe/{make_token(SECRET.encode(), 'unsubscribe', uid_of(engine, email))}"


def main_text(html: str) -> str:
    return html[html.index("<main>") : html.index("</main>")]
