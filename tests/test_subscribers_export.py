"""`digest subscribers export`: a cell a spreadsheet would run as a formula never starts with
=, +, -, @ or a tab."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any


def test_export_escapes_formulas(cli, env, workdir: Path) -> None:
    cli("subscribers", "add", "ana@example.org", "--name", '=HYPERLINK("http://evil")')
    cli("subscribers", "add", "bo@example.org", "--name", "+44 1234")
    r = cli("subscribers", "export", "out.csv")
    assert r.exit_code == 0
    assert r.stdout.strip() == "Exported 2 subscribers to out.csv."
    rows = list(csv.DictReader(Path("out.csv").read_text(encoding="utf-8").splitlines()))
    assert rows[0]["name"] == '\'=HYPERLINK("http://evil")'
    assert rows[1]["name"] == "'+44 1234"
    r = cli("subscribers", "export", "-")
    assert r.stdout.startswith("email,name,status")


def test_export_escapes_cells_a_spreadsheet_would_run(
    cli: Callable[..., Any], env: dict[str, str], workdir: Path
) -> None:
    names = ['=HYPERLINK("http://x","y")', "+1 555", "-2+3", "@SUM(A1)", "\tTabbed", "Ana Jones"]
    for i, name in enumerate(names):
        assert cli("subscribers", "add", f"p{i}@example.org", "--name", name).exit_code == 0
    r = cli("subscribers", "export", "out.csv")
    assert r.exit_code == 0 and r.stdout == "Exported 6 subscribers to out.csv.\n"
    got = list(csv.DictReader(io.StringIO((workdir / "out.csv").read_text(encoding="utf-8"))))
    # The tab is turned into a space by name cleaning; what reaches a cell never starts a formula.
    assert [row["name"] for row in got] == [
        "'=HYPERLINK(\"http://x\",\"y\")", "'+1 555", "'-2+3", "'@SUM(A1)", "Tabbed", "Ana Jones"
    ]  # fmt: skip
    assert all(row["email"][0] not in "=+-@\t" for row in got)
    r = cli("subscribers", "export", "-")
    assert r.exit_code == 0 and "'=HYPERLINK" in r.stdout
