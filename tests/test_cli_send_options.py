"""`digest send` checks its options before it touches anything: a wrong combination is a
usage error (exit 2) even with no database, and nothing is fetched or read for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize(
    "args,message",
    [
        (["--to", "me@example.org", "--scheduled"], "--to/--dry-run, --scheduled and --worker"),
        (["--dry-run", "--worker"], "--to/--dry-run, --scheduled and --worker"),
        (["--force"], "--force only applies to --scheduled"),
        (["--scheduled", "--note", "no-such-note.md"], "--note and --featured shape a new issue"),
        (["--worker", "--featured", "https://example.org/n/1"], "--note and --featured"),
    ],
)
def test_send_rejects_option_combinations_first(
    cli: Any, workdir: Path, args: list[str], message: str
) -> None:
    r = cli("send", "--fetch", *args)
    assert r.exit_code == 2, r.output
    assert f"Error: {message}" in r.stderr
    assert "no database" not in r.output  # the usage error comes before the database check
    assert not (workdir / "subscribers.db").exists()
