"""T2, T3, T4: the real `digest send --yes` into smtp-sink, next to smtp-source into smtp-sink.

Each run gets a fresh copy of a seeded database and its own smtp-sink, so the sink's counters
belong to that run alone. A digest run counts only if the database has a `sent` row for every
subscriber and the sink accepted exactly that many messages.
"""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import corpus
import seed
from procs import FarRelay, Sink, run_measured, smtp_source

SESSIONS = 16


def message_file(folder: Path, n_items: int = corpus.N_ITEMS) -> tuple[Path, int]:
    """The digest's own message for one recipient, LF line ends, for smtp-source -F (which sends
    each line with CRLF): byte for byte the size digest puts on the wire (unsigned)."""
    from digest.compose.wire import MessageTemplate, Recipient

    r = corpus.render(n_items)
    template = MessageTemplate(
        settings=corpus.message_settings(),
        subject=r.subject,
        html_body=r.html,
        text_body=r.text,
        date=datetime.now(UTC),
    )
    data = template.render(
        Recipient(
            "reader1@example.net",
            "Reader 1",
            "<digest.bench.1@partnership.example.org>",
            f"{corpus.BASE_URL}/unsubscribe/0000000000000001.AAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
    )
    path = folder / f"message-{n_items}.eml"
    path.write_bytes(data.replace(b"\r\n", b"\n"))
    return path, len(data)


def _counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT status, count(*) FROM delivery GROUP BY status").fetchall())
    finally:
        con.close()


def digest_send(
    template_db: Path,
    n: int,
    work: Path,
    *,
    label: str,
    timeout: float,
    connections: int = SESSIONS,
    wrap: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    sink_delay: int = 0,
    rtt: float = 0.0,
) -> dict[str, Any]:
    """`digest send --yes` of a fresh issue to n subscribers. `wrap` prefixes the command
    (a profiler); `extra_env` adds settings (DKIM); `sink_delay`: seconds the sink waits
    before answering each DATA; `rtt`: seconds of round trip between digest and the sink
    (procs.FarRelay)."""
    work.mkdir(parents=True, exist_ok=True)
    db = seed.copy_db(template_db, work / f"{label}.db")
    with (
        Sink(expected=n, timeout=timeout, delay=sink_delay) as sink,
        FarRelay(sink.port, rtt / 2) if rtt else contextlib.nullcontext() as far,
    ):
        port = far.port if far is not None else sink.port
        env = {
            **seed.base_env(),
            **corpus.digest_env(f"sqlite:///{db}", port, DIGEST_SMTP_CONNECTIONS=str(connections)),
            **(extra_env or {}),
        }
        cmd = (wrap or []) + [sys.executable, "-P", "-m", "digest", "send", "--yes"]
        started = time.monotonic()
        fin = run_measured(cmd, env=env, cwd=work, timeout=timeout, log=work / label)
        ended = time.monotonic()
        sink_fin = sink.stop()
    counts = _counts(db)
    ok = fin.returncode == 0 and counts.get("sent", 0) == n and sink.messages == n
    problem = None
    if not ok:
        problem = (
            f"exit {fin.returncode}; rows {counts}; sink accepted {sink.messages}; "
            f"stderr: {fin.stderr.strip()[-400:]}"
        )
    for suffix in ("", "-wal", "-shm", ".send-lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # 100k-row copies add up
    return {
        "what": "digest send --yes",
        "messages": n,
        "ok": ok,
        "problem": problem,
        "exit": fin.returncode,
        "wall_s": fin.wall,
        "sink_window_s": sink.window,
        # outside the sink's window: start-up, render, queuing; then the final bookkeeping
        "before_first_s": sink.first_at - started if sink.first_at else None,
        "after_last_s": ended - sink.last_at if sink.last_at else None,
        "cpu_user_s": fin.user,
        "cpu_sys_s": fin.sys,
        "maxrss_kb": fin.maxrss_kb,
        "sink_accepted": sink.messages,
        "sink_cpu_s": sink_fin.cpu,
        "rows": counts,
    }


def source_send(message: Path, n: int, work: Path, *, label: str, timeout: float) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    with Sink(expected=n, timeout=timeout) as sink:
        fin = smtp_source(
            port=sink.port,
            message_file=message,
            messages=n,
            sessions=SESSIONS,
            timeout=timeout,
            log=work / label,
        )
        sink_fin = sink.stop()
    ok = fin.returncode == 0 and sink.messages == n
    return {
        "what": f"smtp-source -s {SESSIONS} -d",
        "messages": n,
        "ok": ok,
        "problem": None
        if ok
        else f"exit {fin.returncode}; sink accepted {sink.messages}; {fin.stderr.strip()[-300:]}",
        "exit": fin.returncode,
        "wall_s": fin.wall,
        "sink_window_s": sink.window,
        "cpu_user_s": fin.user,
        "cpu_sys_s": fin.sys,
        "maxrss_kb": fin.maxrss_kb,
        "sink_accepted": sink.messages,
        "sink_cpu_s": sink_fin.cpu,
    }


def dkim_env(folder: Path, kind: str) -> dict[str, str]:
    """DIGEST_DKIM_* for signing with a fresh key: "rsa" (2048 bits) or "ed25519"."""
    import dkim_cost

    path = folder / f"dkim-{kind}.key"
    if not path.exists():
        path.write_bytes(dkim_cost.rsa_pem() if kind == "rsa" else dkim_cost.ed25519_pem())
        path.chmod(0o600)
    return {
        "DIGEST_DKIM_DOMAIN": "partnership.example.org",
        "DIGEST_DKIM_SELECTOR": f"bench-{kind}",
        "DIGEST_DKIM_PRIVATE_KEY_FILE": str(path),
    }


def cpu_per_msg(run: dict[str, Any]) -> float:
    return (run["cpu_user_s"] + run["cpu_sys_s"]) / run["messages"]


def rate(run: dict[str, Any], key: str = "wall_s") -> float | None:
    t = run.get(key)
    return run["messages"] / t if t else None


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None
