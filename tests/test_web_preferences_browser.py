"""The preferences page in a real headless Chromium (Debian's, through Playwright) against a
real uvicorn server: reached from the link of a digest, a box ticked with the keyboard, the
form submitted, the saved choice shown and stored; no JavaScript on the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from digest.config_load import load_settings
from digest.demo import free_port
from digest.web.app import create_app

from .helpers.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from .helpers.smtp import SmtpServer
from .helpers.web import live_server, rows

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed"
)
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # JavaScript off: the page must work as plain HTML
            context = browser.new_context(viewport={"width": 800, "height": 900},
                                          java_script_enabled=False)  # fmt: skip
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def test_tick_a_topic_and_save_in_a_real_browser(
    cli, env: dict[str, str], engine: Engine, smtp_server: SmtpServer, browser_page: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    page = browser_page
    port = free_port()
    monkeypatch.setenv("DIGEST_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("DIGEST_FREQUENCIES", "weekly,daily")
    for n, category in enumerate(["Procedures", "Training"], 1):
        cli("news", "add", "--title", f"{category} news", "--url", f"https://example.org/{n}",
            "--category", category)  # fmt: skip
    cli("topics", "describe", "Training", "Course dates and places.")
    cli("subscribers", "add", "ana@example.org")
    assert cli("send", "--yes").exit_code == 0
    text = smtp_server.messages[0].message.get_body(("plain",)).get_content()
    (link,) = re.findall(r"Choose what you receive: (\S+)", text)
    app = create_app(load_settings().settings, engine=engine)
    with live_server(app, port=port) as base:
        assert link.startswith(f"{base}/preferences/")
        page.goto(link)
        assert page.title() == "Choose what you receive: Safeguarding News"
        assert page.get_by_role("group", name="Topics").is_visible()
        page.get_by_label("Only the topics I tick below").check()
        training = page.get_by_label("Training")
        assert training.get_attribute("aria-describedby")
        training.focus()
        page.keyboard.press("Space")  # the keyboard ticks it
        assert training.is_checked()
        page.get_by_label("Every day with news").check()
        page.get_by_role("button", name="Save my choices").click()
        page.wait_for_selector("#saved")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-preferences-saved.png"), full_page=True)
        saved = page.locator("#saved").inner_text()
        assert "topics: Training (was every topic)" in saved
        assert "frequency: daily (was weekly)" in saved
        assert page.get_by_label("Training").is_checked()
        assert not page.get_by_label("Procedures").is_checked()
    assert rows(engine, "SELECT topic_key FROM subscriber_topic") == [("training",)]
    assert rows(engine, "SELECT frequency FROM subscriber") == [("daily",)]
