"""`digest` as a real process (python -m digest), for signals, kills and concurrent runs."""

from __future__ import annotations

import os
import subprocess
import sys


def digest_process(env_over: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """Start `digest ARGS…` with the test environment plus `env_over`; stdout/stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        env={**os.environ, **env_over},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
