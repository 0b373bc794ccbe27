"""Categories (issue #13): matched whatever their case and spacing ("Training and events" and
"Training and Events " are one section), stored and shown as first written; the sections in
the order of the setting `sections`, the others alphabetically, whatever the newest item."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.news.categories import category_key, order_sections
from digest.render.issue import ItemView, render_issue

from .helpers.db import (
    database_url_on_both,  # noqa: F401 (the database_url fixture: both databases)
)
from .helpers.render import BRAND, T0

Cli = Callable[..., Any]


@pytest.mark.parametrize(
    "text",
    [
        "Training and events",
        "Training and Events ",
        "  TRAINING   AND EVENTS",
        "training\tand events",
    ],
)
def test_category_key_ignores_case_and_spacing(text: str) -> None:
    assert category_key(text) == "training and events"


def test_category_key_keeps_words_apart() -> None:
    assert category_key("Training") != category_key("Training and events")
    assert category_key("Straße") == category_key("STRASSE")  # case-folded, not lower-cased
    assert category_key("") == ""


def test_order_sections_listed_first_then_alphabetically() -> None:
    names = ["Training", "audit", "Procedures", "News"]
    assert order_sections(names) == ["audit", "News", "Procedures", "Training"]
    assert order_sections(names, ["training ", "PROCEDURES", "Missing"]) == [
        "Training", "Procedures", "audit", "News",
    ]  # fmt: skip


def _sections(html: str) -> list[str]:
    return re.findall(r'<td class="section"[^>]*><h2 id="[^"]*"[^>]*>([^<]*)</h2>', html)


def _views(newest: str) -> list[ItemView]:
    cats = ["Procedures", "training and events", "Audit", "Training and Events "]
    views = [ItemView(f"Item {n}", f"https://example.org/{n}", "", cat, T0 + timedelta(hours=n))
             for n, cat in enumerate(cats)]  # fmt: skip
    views.append(ItemView("Newest", "https://example.org/new", "", newest, T0 + timedelta(days=1)))
    return views


def _render(views: list[ItemView], sections: tuple[str, ...] = ()) -> Any:
    brand = dataclasses.replace(BRAND, sections=sections)
    return render_issue(brand, views, period_start=T0, period_end=T0 + timedelta(days=7), number=3)


def test_render_groups_spellings_and_orders_sections_the_same_every_week() -> None:
    week1 = _render(_views("Procedures"))
    week2 = _render(_views("Audit"))
    # one section per key, named as its oldest item spells it; alphabetical both weeks
    assert _sections(week1.html) == _sections(week2.html) == [
        "Audit", "Procedures", "training and events",
    ]  # fmt: skip
    assert [len(entries) for _, entries in week1.sections] == [1, 2, 2]
    assert "TRAINING AND EVENTS\n" in week1.text and week1.text.count("TRAINING AND EVENTS") == 1
    fixed = _render(_views("Audit"), ("Training and events", "Procedures"))
    assert _sections(fixed.html) == ["training and events", "Procedures", "Audit"]
    # numbered in reading order
    assert [e["number"] for _, entries in fixed.sections for e in entries] == [1, 2, 3, 4, 5]


def test_categories_are_stored_as_first_written(cli: Cli, env: dict[str, str]) -> None:
    for n, cat in enumerate(["Training and events", "Training and Events ", "TRAINING AND EVENTS"]):
        r = cli("news", "add", "--title", f"Item {n}", "--url", f"https://example.org/{n}",
                "--category", cat)  # fmt: skip
        assert r.exit_code == 0
    r = cli(
        "news", "add", "--title", "Other", "--url", "https://example.org/o", "--category", "Audit"
    )
    assert r.exit_code == 0
    r = cli("news", "edit", "4", "--category", " training and EVENTS")
    assert r.stdout.endswith(": category changed.\n")
    rows = csv.DictReader(io.StringIO(cli("news", "list", "--format", "csv").stdout))
    assert {row["category"] for row in rows} == {"Training and events"}
    preview = cli("preview")
    assert preview.exit_code == 0
    assert "4 items in 1 section." in preview.stdout


def test_the_sections_setting_orders_the_preview(
    cli: Cli, env: dict[str, str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n, cat in enumerate(["Training", "Audit", "Procedures", ""]):
        r = cli("news", "add", "--title", f"Item {n}", "--url", f"https://example.org/{n}",
                "--category", cat, "--published", f"2026-11-2{n + 5}")  # fmt: skip
        assert r.exit_code == 0, r.output

    def order() -> list[str]:
        assert cli("preview").exit_code == 0
        html = (workdir / "preview" / "digest.html").read_text(encoding="utf-8")
        return _sections(html)

    assert order() == ["Audit", "News", "Procedures", "Training"]
    (workdir / "digest.toml").write_text('sections = ["procedures", "Training"]\n')
    assert order() == ["Procedures", "Training", "Audit", "News"]
    monkeypatch.setenv("DIGEST_SECTIONS", "News, Audit")
    assert order() == ["News", "Audit", "Procedures", "Training"]
    shown = cli("config", "show").stdout
    assert re.search(r"sections +News, Audit +env DIGEST_SECTIONS", shown)  # a list as words
    monkeypatch.setenv("DIGEST_SECTIONS", "x" * 101)
    r = cli("preview")
    assert r.exit_code == 3
    assert (
        "setting 'sections' (env DIGEST_SECTIONS): a section name is at most 100 characters"
        in r.stderr
    )
