"""`digest` as a process exits without tearing the interpreter down (digest.cli._exit_now):
the exit code, every line of output and the exit handlers are still there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _digest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "digest", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={"PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": f"sqlite:///{cwd}/s.db"},
    )  # fmt: skip


def test_exit_codes_and_output_survive_the_fast_exit(tmp_path: Path) -> None:
    r = _digest("--help", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.startswith("Usage:") and r.stdout.endswith("\n")  # flushed to the end
    assert "  send " in r.stdout
    r = _digest("no-such-command", cwd=tmp_path)
    assert r.returncode == 2
    assert "No such command 'no-such-command'" in r.stderr
    r = _digest("init", cwd=tmp_path)  # writes files, opens and migrates a database
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "digest.toml").exists()
    r = _digest("subscribers", "add", "ana@example.net", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _digest("subscribers", "list", cwd=tmp_path)
    assert r.returncode == 0 and "ana@example.net" in r.stdout
    r = _digest("send", "--yes", cwd=tmp_path)  # nothing to send; exits through the same path
    assert r.returncode == 0 and "nothing to send" in r.stdout
