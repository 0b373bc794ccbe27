"""Real failures of the machine for the tests: file permissions that apply even to root (the
capability that overrides them dropped with setpriv), a small full disk (a tmpfs), and the
digest command as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply to this process as to any user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): permissions would not apply")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def run_digest(
    *args: str, cwd: Path, env: dict[str, str], prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`digest ARGS` as its own process (the real entry point, real stdout and stderr)."""
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "digest", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (root only; skipped otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small disk needs root to mount a tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(folder: Path) -> None:
    """Write a file in `folder` until its disk is full."""
    with (folder / "filler").open("wb", buffering=0) as fh:
        for chunk in (65536, 512, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError:
                continue
