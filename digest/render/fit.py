"""The size guard: Gmail clips a message whose HTML is larger than about 102 KB, so an issue
that would be larger is laid out again with shorter summaries, then titles only, then with the
rest left to its web version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from digest.news.normalise import html_to_text
from digest.render.templates import wrap_text

# Gmail clips a message whose HTML is larger than about 102 KB; aim well under it.
GMAIL_CLIP_BYTES = 102_000


HTML_SIZE_TARGET = 90_000


SHORT_SUMMARY_CHARS = 280


@dataclass(frozen=True)
class Fit:
    """How an issue was made to fit under the size target (Gmail clips larger HTML)."""

    html_bytes: int
    limit: int
    shortened: int = 0  # summaries cut short
    title_only: int = 0  # items listed as a title link only
    archived: int = 0  # items left to the web version of the issue
    over_limit: bool = False  # still too large (no web archive to send the rest to)

    @property
    def changed(self) -> bool:
        return bool(self.shortened or self.title_only or self.archived)

    def describe(self) -> list[str]:
        """Sentences for `digest preview`: what was cut to fit, if anything."""
        kb = f"{self.html_bytes / 1024:.0f} KB of HTML"
        lines = []
        if self.shortened:
            lines.append(f"{self.shortened} summaries were shortened to fit.")
        if self.title_only:
            lines.append(f"{self.title_only} items are listed by title only.")
        if self.archived:
            lines.append(
                f"{self.archived} items are only in the web version (the email links to it)."
            )
        if self.over_limit and self.html_bytes > GMAIL_CLIP_BYTES:
            lines.append(
                f"Still {kb}, over Gmail's clipping limit ({GMAIL_CLIP_BYTES / 1000:.0f} KB): "
                "`digest send` refuses to send it. Set base_url so the rest can go to the web "
                "archive, or send fewer items."
            )
        elif self.over_limit:
            lines.append(
                f"Still {kb}, over the {self.limit / 1024:.0f} KB target: Gmail may clip it. "
                "Set base_url so the rest can go to the web archive, or send fewer items."
            )
        elif lines:
            lines.append(f"Now {kb}, under the {self.limit / 1024:.0f} KB target.")
        return lines


def shorten_entry(entry: dict[str, Any], limit: int = SHORT_SUMMARY_CHARS) -> dict[str, Any]:
    """The entry with its summary cut to about `limit` characters of plain text."""
    text = html_to_text(entry["summary_html"], width=0)
    if len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,.;:")
        text = cut + "…"
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {
        **entry,
        "mode": "short",
        "summary_html": f"<p>{escaped}</p>" if text else "",
        "summary_text": wrap_text(text, 72, "   ") if text else "",
    }


def layout(
    sections: list[tuple[str, list[dict[str, Any]]]],
    *,
    shorten: bool,
    with_summary: int,
    shown: int,
) -> tuple[list[tuple[str, list[dict[str, Any]]]], int]:
    """Sections where, in reading order, the first `with_summary` entries keep a summary (cut
    short if `shorten`), the rest up to `shown` are title-only, and the others are left out.
    Returns the sections and how many summaries were actually cut."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    n = cut = 0
    for category, entries in sections:
        kept = []
        for entry in entries:
            if n >= shown:
                break
            if n >= with_summary:
                entry = {**entry, "mode": "title"}
            elif shorten:
                short = shorten_entry(entry)
                cut += short["summary_text"] != entry["summary_text"]
                entry = short
            kept.append(entry)
            n += 1
        if kept:
            out.append((category, kept))
    return out, cut


def largest(low: int, high: int, ok: Callable[[int], bool]) -> int | None:
    """The largest n in [low, high] with ok(n), for ok true up to a point; None if ok(low) fails."""
    if not ok(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low
