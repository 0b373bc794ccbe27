"""The benchmark harness runs: bench/run.py in a tiny configuration (50 subscribers, a 3-item
digest, unsigned and RSA-signed) against the real smtp-sink and smtp-source, and writes its
table and JSON. Nothing here looks at a timing (STYLE.md habit 14)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.mark.slow
def test_bench_runs_in_a_tiny_configuration(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH), "--quick", "--only", "T2,T3", "--repeats", "1",
           "--subscribers", "50", "--sizes", "3", "--dkim", "none,rsa",
           "--results", str(tmp_path / "results"), "--work", str(tmp_path / "work")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for row in ("T2 send rate, end to end", "T3 sender CPU per message",
                "D1 DKIM RSA-2048 extra CPU/msg", "D2 DKIM RSA-2048 send rate"):  # fmt: skip
        assert row in r.stdout
    (result,) = (tmp_path / "results").glob("*-quick.json")
    out = json.loads(result.read_text())
    size = out["sends"]["3"]
    for side in ("smtp_source", "none", "rsa"):
        (run,) = size["runs"][side]
        # every delivery recorded: exit 0, a `sent` row per subscriber, the sink took each
        assert run["ok"], run["problem"]
        assert run["sink_accepted"] == 50
    assert size["runs"]["none"][0]["rows"] == {"sent": 50}
    assert size["reference"]["rsa2048_sign_plus_sha256_us"] > 0
    assert out["table"] in r.stdout
