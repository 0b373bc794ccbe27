"""PostgreSQL scale-out: 1 vs 2 `digest send --worker` processes sharing one issue.

Each configuration gets its own database (created and dropped here) on the local server,
seeded the same way, with the issue created through digest's library (plan_send +
start_issue) before the workers start, so the workers only share out its deliveries.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import corpus
import seed
from procs import Finished, Sink, run_measured

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def worker_flag_available(env: dict[str, str], cwd: Path) -> bool:
    r = subprocess.run(
        [sys.executable, "-P", "-m", "digest", "send", "--help"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "--worker" in r.stdout


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as con:
        con.execute(sql)


def _create_issue(env: dict[str, str]) -> int:
    from digest.config_load import load_settings
    from digest.db import make_engine, session_scope
    from digest.send.plan import plan_send, start_issue

    settings = load_settings(environ=env).settings
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        plan = plan_send(session, settings)
        assert plan is not None, "no items: nothing to send"
        issue = start_issue(session, plan)
        number = issue.number
    engine.dispose()
    return number


def _sent(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as con:
        row = con.execute("SELECT count(*) FROM delivery WHERE status = 'sent'").fetchone()
        return int(row[0]) if row else 0


def run_config(workers: int, n: int, work: Path, *, timeout: float) -> dict[str, Any]:
    dbname = f"digest_bench_{workers}w"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
    _admin(f"DROP DATABASE IF EXISTS {dbname}")
    _admin(f"CREATE DATABASE {dbname}")
    try:
        with Sink(expected=n, timeout=timeout) as sink:
            env = {
                **seed.base_env(),
                **corpus.digest_env(url, sink.port, DIGEST_SMTP_CONNECTIONS="16"),
            }
            seed.init_db(url, work / f"pg-init-{workers}", env)
            seed.add_items(url)
            seed.add_subscribers_postgres(url, n)
            _create_issue(env)
            results: list[Finished] = []
            start = time.monotonic()

            def one(k: int) -> None:
                cmd = [sys.executable, "-P", "-m", "digest", "send", "--worker", "--yes"]
                results.append(
                    run_measured(
                        cmd, env=env, cwd=work, timeout=timeout, log=work / f"pg-{workers}w-{k}"
                    )
                )

            threads = [threading.Thread(target=one, args=(k,)) for k in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - start
            sink.stop()
        sent = _sent(url)
        ok = all(r.returncode == 0 for r in results) and sent == n and sink.messages == n
        return {
            "workers": workers,
            "messages": n,
            "ok": ok,
            "problem": None
            if ok
            else f"exits {[r.returncode for r in results]}; sent rows "
            f"{sent}; sink {sink.messages}; {results[0].stderr.strip()[-300:] if results else ''}",
            "wall_s": wall,
            "sink_window_s": sink.window,
            "rate": n / wall if ok else None,
            "cpu_s": sum(r.cpu for r in results),
        }
    finally:
        _admin(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def run(work: Path, *, n: int, timeout: float, log: Any = print) -> dict[str, Any]:
    env = {**seed.base_env(), **corpus.digest_env("sqlite:///unused.db", 25)}
    if not worker_flag_available(env, work):
        return {"pending": True, "reason": "`digest send --help` has no --worker option yet"}
    out = {}
    for workers in (1, 2):
        r = run_config(workers, n, work, timeout=timeout)
        rate = f"{r['rate']:.0f} msg/s" if r["rate"] else "no valid rate"
        log(
            f"  PG {workers} worker(s): {rate}, ok={r['ok']}"
            + (f" PROBLEM: {r['problem']}" if r["problem"] else "")
        )
        out[f"{workers}w"] = r
    one, two = out["1w"]["rate"], out["2w"]["rate"]
    out["ratio"] = two / one if one and two else None
    return out
