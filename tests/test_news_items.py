"""News items by hand and from files (news/items.py): add, update by link, list; titles and
summaries cleaned; bad items and files refused, the rest kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.db import make_engine


def _items(env: dict[str, str]) -> list[tuple[str, ...]]:
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with engine.connect() as c:
        rows = [
            tuple(r)
            for r in c.execute(
                sa.text("SELECT title, url, category, summary_html FROM news_item ORDER BY id")
            )
        ]
    engine.dispose()
    return rows


def test_add_list_and_update(cli, env) -> None:
    r = cli("news", "add", "--title", "New neglect toolkit", "--url", "https://example.org/n/1",
            "--summary", "<p>Use it <b>now</b>.</p>", "--published", "Thurs 12th Sept 2013",
            "--category", "Procedures")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "Added 'New neglect toolkit' (2013-09-12 00:00)."
    r = cli("news", "add", "--title", "New neglect toolkit (revised)", "--url", "https://example.org/n/1#top",
            "--published", "12 Sept 2013")  # fmt: skip
    assert r.stdout.startswith("Updated 'New neglect toolkit (revised)'")
    assert len(_items(env)) == 1  # same link, same item
    r = cli("news", "list")
    assert "New neglect toolkit (revised)" in r.stdout and "1 item" in r.stdout
    r = cli("news", "list", "--since", "2014-01-01", "--format", "json")
    assert json.loads(r.stdout) == []


def test_title_with_crlf_and_html_is_cleaned(cli, env) -> None:
    r = cli("news", "add", "--title", "Big <script>alert(1)</script><b>news</b>\r\nBcc: victim@example.org",
            "--url", "https://example.org/n/2", "--summary", "<p onclick='x()'>Hi<script>bad()</script></p><iframe src='https://x'></iframe>")  # fmt: skip
    assert r.exit_code == 0, r.output
    title, _, _, summary = _items(env)[0]
    assert title == "Big news Bcc: victim@example.org"
    assert "\n" not in title and "<" not in title
    assert summary == "<p>Hi</p>"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--title", "x", "--url", "javascript:alert(1)"), "is not an absolute http(s) link"),
        (("--title", "x", "--url", "/relative"), "is not an absolute http(s) link"),
        (("--title", "  ", "--url", "https://example.org/"), "the title is empty"),
        (
            ("--title", "x", "--url", "https://example.org/", "--published", "someday"),
            "--published: cannot read 'someday'",
        ),
    ],
)
def test_add_rejects_bad_items(cli, env, args: tuple[str, ...], message: str) -> None:
    r = cli("news", "add", *args)
    assert r.exit_code == 2
    assert message in r.stderr
    assert _items(env) == []


def test_import_json_and_csv(cli, env, workdir: Path) -> None:
    Path("items.json").write_text(json.dumps([
        {"title": "One", "url": "https://example.org/1", "published": "2026-11-25", "category": "Training"},
        {"title": "Two", "url": "ftp://example.org/2"},
        {"title": "", "url": "https://example.org/3"},
        "not an object",
    ]))  # fmt: skip
    r = cli("news", "import", "items.json")
    assert r.exit_code == 1
    assert "1 new, 0 updated, 0 unchanged, 3 rejected." in r.stdout
    assert "item 2: 'ftp://example.org/2' is not an absolute http(s) link" in r.stderr
    assert "item 3: the title is empty" in r.stderr
    Path("items.csv").write_text(
        "title,url,summary,published,category\n"
        "One,https://example.org/1,,2026-11-25,Training\n"
        "Three,https://example.org/3,A summary,Thurs 26th Nov 2026,Research\n"
    )
    r = cli("news", "import", "items.csv")
    assert r.exit_code == 0, r.output
    assert "1 new, 0 updated, 1 unchanged, 0 rejected." in r.stdout
    assert [t for t, *_ in _items(env)] == ["One", "Three"]


def test_import_bad_files(cli, env, workdir: Path) -> None:
    Path("broken.json").write_text("[{")
    r = cli("news", "import", "broken.json")
    assert r.exit_code == 2 and "is not valid JSON" in r.stderr
    Path("cols.csv").write_text("headline,link\nx,https://example.org\n")
    r = cli("news", "import", "cols.csv")
    assert r.exit_code == 2 and "needs 'title' and 'url' columns" in r.stderr
    assert _items(env) == []


def test_reimport_with_empty_cells_keeps_what_the_item_has(cli, env, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text(
        "title,url,summary,published,category\n"
        "Toolkit,https://example.org/t,Use it.,2026-11-20,Procedures\n",
        encoding="utf-8",
    )
    assert cli("news", "import", str(first)).exit_code == 0
    again = tmp_path / "again.csv"
    again.write_text("title,url\nToolkit (2027),https://example.org/t\n", encoding="utf-8")
    r = cli("news", "import", str(again))
    assert r.stdout == "0 new, 1 updated, 0 unchanged, 0 rejected.\n"
    assert _items(env) == [
        ("Toolkit (2027)", "https://example.org/t", "Procedures", "<p>Use it.</p>")
    ]
