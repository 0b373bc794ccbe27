"""The golden issue in headless Chromium (Debian's, through Playwright) at 600 and 375 pixels:
nothing wider than the screen, the unsubscribe link visible, the preheader hidden, no request
but the logo. Screenshots are kept in tests/artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from digest.render import PLACEHOLDER_UNSUBSCRIBE

from .helpers.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from .helpers.render import (
    CRAFT_BRAND,
    render_golden,
)

# A 1x1 PNG, served for the logo so the page never reaches the network.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a3e1a9d80000000049454e44ae426082"
)


@pytest.mark.slow
@pytest.mark.parametrize("width", [600, 375])
def test_golden_issue_in_headless_chromium(width: int) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    html = render_golden().html.replace(
        PLACEHOLDER_UNSUBSCRIBE, "https://news.example.org/unsubscribe/TOKEN"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})

            def route(r: Any) -> None:
                requests.append(r.request.url)
                if r.request.url == CRAFT_BRAND.logo_url:
                    r.fulfill(status=200, content_type="image/png", body=PIXEL)
                else:
                    r.abort()

            page.route("**/*", route)
            page.set_content(html, wait_until="load")
            page.screenshot(path=str(ARTIFACTS / f"email-golden-{width}.png"), full_page=True)
            # Nothing wider than the viewport: no horizontal scrolling, no element past the edge.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            too_wide = page.evaluate(
                """(w) => Array.from(document.querySelectorAll('body *'))
                    .filter(e => { const r = e.getBoundingClientRect();
                                   return r.width > 0 && r.right > w + 0.5; })
                    .map(e => e.tagName + '.' + e.className)""",
                width,
            )
            assert too_wide == [], too_wide
            unsubscribe = page.get_by_role("link", name="Unsubscribe", exact=True)
            assert unsubscribe.is_visible()
            box = unsubscribe.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
            assert unsubscribe.get_attribute("href") == "https://news.example.org/unsubscribe/TOKEN"
            # The preheader is in the page but not shown.
            assert not page.locator(".preheader").is_visible()
        finally:
            browser.close()
    assert requests == [CRAFT_BRAND.logo_url]
