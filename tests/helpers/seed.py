"""A newsletter with people and news in it, made through the real CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


def seed(cli: Callable[..., Any], subscribers: int = 5, items: int = 3) -> None:
    """readerN@example.net ("Reader N"), and items in two categories from the last hours."""
    now = datetime.now(UTC)
    for i in range(subscribers):
        r = cli("subscribers", "add", f"reader{i}@example.net", "--name", f"Reader {i}")
        assert r.exit_code == 0, r.output
    for i in range(items):
        r = cli("news", "add", "--title", f"Item {i}", "--url", f"https://example.org/n/{i}",
                "--summary", f"<p>Summary {i}</p>", "--category", ["Procedures", "Training"][i % 2],
                "--published", (now - timedelta(hours=i + 1)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output


def seed_issue(cli: Callable[..., Any], emails: list[str], items: int = 2) -> None:
    """These subscribers (no names), and uncategorised items from the last hours."""
    now = datetime.now(UTC)
    for email in emails:
        r = cli("subscribers", "add", email)
        assert r.exit_code == 0, r.output
    for i in range(items):
        r = cli("news", "add", "--title", f"Item {i}", "--url", f"https://example.org/n/{i}",
                "--summary", f"<p>Summary {i}</p>", "--published",
                (now - timedelta(hours=i + 1)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output
