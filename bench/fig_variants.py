"""TV: one issue in 20 variants (issue 15) next to the same issue in one variant, both the real
`digest send --yes` into smtp-sink, alternated in one run.

20,000 subscribers; the 33 items of the corpus spread over 8 topics. The "many" database gives
the subscribers 20 distinct topic sets (8 of seven topics, 12 of six, so every variant is
nearly the size of the whole issue and the comparison is about the variants, not smaller
mail); the "one" database is the same without topic choices (everyone the whole issue). Each
run gets a fresh copy of its database and its own sink; a run counts only if it exited 0,
every delivery is `sent` and the sink accepted that many messages. The render cost of every
variant (Jinja2 + premailer, when the issue is made) is read back from issue_variant.

    python bench/run.py --only TV
    python bench/fig_variants.py --quick     # alone, small
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import corpus
import seed
from procs import Sink, run_measured

TOPICS = ["Procedures", "Training", "Research", "Practice guidance", "Local news",
          "Health", "Education", "Police"]  # fmt: skip
SESSIONS = 16


def topic_sets() -> list[tuple[str, ...]]:
    """20 distinct sets: every 7 of the 8 topics, then the first 12 sets of 6."""
    sevens = list(itertools.combinations(TOPICS, 7))
    sixes = list(itertools.combinations(TOPICS, 6))[:12]
    return sevens + sixes


def _items(url: str) -> None:
    """The corpus items, their categories spread over the 8 topics."""
    from digest.db import make_engine, session_scope
    from digest.news.items import ItemInput, upsert_item

    engine = make_engine(url)
    with session_scope(engine) as session:
        for n, d in enumerate(corpus.items_for(corpus.N_ITEMS)):
            upsert_item(session, ItemInput(
                title=str(d["title"]), url=str(d["url"]), summary=str(d["summary_html"]),
                category=TOPICS[n % len(TOPICS)], published=d["published_at"],  # type: ignore[arg-type]
            ))  # fmt: skip
    engine.dispose()


def template_db(folder: Path, n: int, *, many: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"variants-{'many' if many else 'one'}-{n}.db"
    if path.exists():
        return path
    url = f"sqlite:///{path}"
    seed.init_db(url, folder / "init-variants", {**seed.base_env(), **corpus.digest_env(url, 25)})
    _items(url)
    seed.add_subscribers_sqlite(path, n)
    if many:
        sets = topic_sets()
        con = sqlite3.connect(path)
        ids = [r[0] for r in con.execute("SELECT id FROM subscriber ORDER BY id")]
        rows = ((sid, " ".join(t.split()).casefold()) for i, sid in enumerate(ids)
                for t in sets[i % len(sets)])  # fmt: skip
        with con:
            con.executemany("INSERT INTO subscriber_topic (subscriber_id, topic_key) "
                            "VALUES (?, ?)", rows)  # fmt: skip
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
    return path


def send(template: Path, n: int, work: Path, *, label: str, timeout: float) -> dict[str, Any]:
    """`digest send --yes` on a fresh copy; what it did, read back from the database."""
    db = seed.copy_db(template, work / f"{label}.db")
    with Sink(expected=n, timeout=timeout) as sink:
        env = {**seed.base_env(), **corpus.digest_env(
            f"sqlite:///{db}", sink.port, DIGEST_SMTP_CONNECTIONS=str(SESSIONS))}  # fmt: skip
        cmd = [sys.executable, "-P", "-m", "digest", "send", "--yes"]
        fin = run_measured(cmd, env=env, cwd=work, timeout=timeout, log=work / label)
        sink_fin = sink.stop()
    con = sqlite3.connect(db)
    try:
        counts = dict(con.execute("SELECT status, count(*) FROM delivery GROUP BY status"))
        variants = con.execute(
            "SELECT topics, render_ms, length(html) FROM issue_variant"
        ).fetchall()
        ((whole,),) = con.execute("SELECT length(html) FROM issue").fetchall()
    finally:
        con.close()
    for suffix in ("", "-wal", "-shm", ".send-lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    ok = fin.returncode == 0 and counts.get("sent", 0) == n and sink.messages == n
    return {
        "messages": n, "ok": ok, "exit": fin.returncode, "wall_s": fin.wall,
        "sink_window_s": sink.window, "cpu_s": fin.user + fin.sys, "maxrss_kb": fin.maxrss_kb,
        "sink_accepted": sink.messages, "sink_cpu_s": sink_fin.cpu, "rows": counts,
        "variants": len(variants), "render_ms": [v[1] for v in variants],
        "variant_html_chars": [v[2] for v in variants], "issue_html_chars": whole,
        "problem": None if ok else f"exit {fin.returncode}; rows {counts}; sink {sink.messages}; "
        f"{fin.stderr.strip()[-300:]}",
    }  # fmt: skip


def _load() -> float:
    return os.getloadavg()[0]


def run(work: Path, *, n: int = 20_000, repeats: int = 3, timeout: float = 900,
        log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Alternated pairs (one variant, twenty; then twenty, one; …), medians of each side."""
    work.mkdir(parents=True, exist_ok=True)
    one, many = template_db(work, n, many=False), template_db(work, n, many=True)
    runs: dict[str, list[dict[str, Any]]] = {"one": [], "many": []}
    loads: list[float] = []
    for i in range(repeats):
        order = ("one", "many") if i % 2 == 0 else ("many", "one")
        for side in order:
            loads.append(_load())
            r = send(one if side == "one" else many, n, work, label=f"tv-{side}-{i}",
                     timeout=timeout)  # fmt: skip
            runs[side].append(r)
            log(f"  TV run {i + 1} {side:>4}: {n / r['wall_s']:,.0f} msg/s end to end, "
                f"peak RSS {r['maxrss_kb'] / 1024:.1f} MiB, {r['variants']} variants, "
                f"load {loads[-1]:.2f}, ok={r['ok']}{'' if r['ok'] else ' ' + str(r['problem'])}")  # fmt: skip
    good = {k: [r for r in v if r["ok"]] for k, v in runs.items()}

    def med(side: str, f: Callable[[dict[str, Any]], float]) -> float | None:
        vals = [f(r) for r in good[side]]
        return statistics.median(vals) if vals else None

    rate_one = med("one", lambda r: n / r["wall_s"])
    rate_many = med("many", lambda r: n / r["wall_s"])
    rss_one = med("one", lambda r: r["maxrss_kb"])
    rss_many = med("many", lambda r: r["maxrss_kb"])
    render = [ms for r in good["many"] for ms in r["render_ms"]]
    return {
        "subscribers": n, "topics": len(TOPICS), "repeats": repeats,
        "rate_one": rate_one, "rate_many": rate_many,
        "rate_ratio": rate_many / rate_one if rate_one and rate_many else None,
        "window_rate_one": med("one", lambda r: n / r["sink_window_s"]),
        "window_rate_many": med("many", lambda r: n / r["sink_window_s"]),
        "rss_one_kb": rss_one, "rss_many_kb": rss_many,
        "rss_ratio": rss_many / rss_one if rss_one and rss_many else None,
        "variants": good["many"][0]["variants"] if good["many"] else None,
        "render_ms_per_variant_median": statistics.median(render) if render else None,
        "render_ms_per_variant_max": max(render) if render else None,
        "variant_html_vs_issue": (
            statistics.mean(good["many"][0]["variant_html_chars"])
            / good["many"][0]["issue_html_chars"] if good["many"] else None
        ),
        "load_1min_before_each_run": loads, "runs": runs,
    }  # fmt: skip


def report_rows(tv: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows for run.py's table: (figure, digest, reference, ratio, target, met)."""

    def fmt(v: float | None, unit: str) -> str:
        return "-" if v is None else f"{v:,.0f}{unit}"

    rate, rss = tv["rate_ratio"], tv["rss_ratio"]
    return [
        ("TV 20 variants vs 1, send rate", fmt(tv["rate_many"], " msg/s"),
         fmt(tv["rate_one"], " msg/s"), "-" if rate is None else f"{rate:.2f}×", "≥ 0.8×",
         rate is not None and rate >= 0.8),
        ("   TV peak RSS", fmt((tv["rss_many_kb"] or 0) / 1024, " MiB"),
         fmt((tv["rss_one_kb"] or 0) / 1024, " MiB"), "-" if rss is None else f"{rss:.2f}×",
         "≤ 1.2×", rss is not None and rss <= 1.2),
        ("   TV render per variant", f"{tv['render_ms_per_variant_median'] or 0:.0f} ms",
         f"max {tv['render_ms_per_variant_max'] or 0:.0f} ms", f"{tv['variants']} variants",
         "report", None),
    ]  # fmt: skip


if __name__ == "__main__":
    import argparse
    import json
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    out = run(Path("/tmp/digest-bench") / time.strftime("tv-%Y%m%dT%H%M%S"),
              n=2000 if a.quick else 20_000, repeats=1 if a.quick else a.repeats)  # fmt: skip
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))
    for row in report_rows(out):
        print(row)
