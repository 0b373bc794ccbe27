"""Subscribe -> confirm -> unsubscribe, driven in a real headless Chromium (Debian's
`chromium`, through Playwright) against a real uvicorn server, clicking the actual buttons.

Screenshots are kept in tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from digest.config_load import load_settings
from digest.demo import free_port
from digest.tokens import make_token
from digest.web.app import create_app

from .helpers.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from .helpers.newsletter import SECRET
from .helpers.smtp import SmtpServer
from .helpers.web import confirm_link, live_server, path_of, rows

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed"
)
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's `chromium` (apt-get install -y chromium)",
        allow_module_level=True,
    )


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 800, "height": 900})
            page = context.new_page()
            # Only our loopback server: anything else the page asked for would fail the test.
            requests: list[str] = []
            page.on("request", lambda req: requests.append(req.url))
            page.set_default_timeout(15_000)
            yield page
            assert all(url.startswith("http://127.0.0.1:") for url in requests), requests
        finally:
            browser.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


def test_subscribe_confirm_unsubscribe_in_a_real_browser(
    env: dict[str, str], engine: Engine, smtp_server: SmtpServer, browser_page: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    page = browser_page
    # base_url must be where the browser finds the server, so the port is chosen first.
    port = free_port()
    monkeypatch.setenv("DIGEST_BASE_URL", f"http://127.0.0.1:{port}")
    app = create_app(load_settings().settings, engine=engine)
    with live_server(app, port=port) as base:
        page.goto(f"{base}/subscribe")
        assert page.title() == "Subscribe to Safeguarding News"
        page.get_by_label("Email address").fill("ana@example.org")
        page.get_by_label("Your name").fill("Ana Jones")
        _shot(page, "1-subscribe-form")
        page.get_by_role("button", name="Subscribe").click()
        page.wait_for_selector("h1:has-text('Check your inbox')")
        _shot(page, "2-check-your-inbox")
        smtp_server.wait_for(1)
        link = confirm_link(smtp_server.messages[0])
        assert link.startswith(f"{base}/confirm/")

        page.goto(link)
        _shot(page, "3-confirm-page")
        assert rows(engine, "SELECT status FROM subscriber") == [
            ("pending",)
        ]  # opening changed nothing
        page.get_by_role("button", name="Confirm my subscription").click()
        page.wait_for_selector("h1:has-text('You are subscribed')")
        _shot(page, "4-confirmed")
        assert rows(engine, "SELECT status, status_source FROM subscriber") == [("active", "web")]

        uid = rows(engine, "SELECT uid FROM subscriber")[0][0]
        page.goto(f"{base}/unsubscribe/{make_token(SECRET.encode(), 'unsubscribe', uid)}")
        _shot(page, "5-unsubscribe-page")
        assert rows(engine, "SELECT status FROM subscriber") == [("active",)]
        page.get_by_role("button", name="Unsubscribe").click()
        page.wait_for_selector("h1:has-text('You are unsubscribed')")
        _shot(page, "6-unsubscribed")
        assert rows(engine, "SELECT status, status_source FROM subscriber") == [
            ("unsubscribed", "web")
        ]
        page.get_by_role("link", name="Subscribe again").click()
        page.wait_for_selector("h1:has-text('Subscribe to Safeguarding News')")
        assert path_of(page.url) == "/subscribe"

        page.goto(f"{base}/confirm/not-a-token")
        _shot(page, "7-invalid-link")
        assert page.locator("h1").inner_text() == "This link does not work"
