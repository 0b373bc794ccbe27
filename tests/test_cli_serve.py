"""`digest serve` as a real process: every List-Unsubscribe link honoured over HTTP, the token
kept out of the access log; a busy port and a missing base_url are clear errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import Engine

from digest.demo import free_port

from .helpers.seed import seed_issue
from .helpers.smtp import SmtpServer
from .helpers.web import (
    rows,
)


def _wait_for(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_digest_serve_honours_every_list_unsubscribe_link(
    cli: Callable[..., Any], engine: Engine, smtp_server: SmtpServer
) -> None:
    """`digest serve` as a real process; each message's List-Unsubscribe https link, as a
    reverse proxy would pass it on, one-click POSTed with urllib (no cookies, no redirects)."""
    readers = [f"reader{i}@example.net" for i in range(3)]
    seed_issue(cli, readers)
    assert cli("send", "--yes").exit_code == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz")
        for reader in readers:
            msg = smtp_server.by_rcpt()[reader][0].message
            link = re.match(r"<(https://[^>]+)>", msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
            # The visible link in the body is the same link.
            assert f'href="{link}"' in msg.get_body(("html",)).get_content()
            local = f"http://127.0.0.1:{port}{urlsplit(link).path}"
            req = urllib.request.Request(
                local, data=b"List-Unsubscribe=One-Click", method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200 and r.url == local  # answered, not redirected
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/archive/1", timeout=10) as r:
            assert b"Item 0" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert f"Serving Safeguarding News on http://127.0.0.1:{port}" in out.decode()
    # The access log names the route but never the token.
    log = out + err
    assert "POST /unsubscribe/… HTTP/1.1".encode() in log
    assert not re.search(rb"/unsubscribe/[0-9a-f]{32}\.", log)
    assert (
        rows(engine, "SELECT status, status_source FROM subscriber")
        == [("unsubscribed", "one-click")] * 3
    )


def test_serve_reports_a_busy_port(cli: Callable[..., Any], env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = cli("serve", "--port", str(port))
    assert r.exit_code == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "Hint: Choose another --port" in r.stderr


def test_serve_needs_base_url(
    cli: Callable[..., Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_BASE_URL")
    r = cli("serve")
    assert r.exit_code == 3
    assert "Error: base_url is not set" in r.stderr and "DIGEST_BASE_URL" in r.stderr
