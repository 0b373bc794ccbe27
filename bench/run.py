"""Issue 5's and 11's speed figures, each against a reference measured in the same run.

    python bench/run.py              # every figure at full size (~12 min on 2 cores)
    python bench/run.py --quick      # smaller sizes, for development; not for the record
    python bench/run.py --only T1,T5 --source /tmp/digest-at-abc123 --profile

Prints each figure next to its reference and the ratio, and writes bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIGURES = ("T1", "T2", "T3", "T4", "T5", "C", "PG", "TV")


def _log(msg: str) -> None:
    print(msg, flush=True)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    sink_version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "postfix"], capture_output=True, text=True
    ).stdout
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "postfix": sink_version,
    }


def code_under_test() -> dict[str, Any]:
    import digest

    root = Path(digest.__file__).resolve().parent.parent
    info: dict[str, Any] = {"path": str(root)}
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        info["commit"] = head.stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "digest"], capture_output=True, text=True
        ).stdout.split("\n")
        info["uncommitted"] = [ln[3:] for ln in dirty if ln.strip()]
    else:
        info["commit"] = "(not a git checkout: a snapshot, see --source)"
        for name in ("BASE_COMMIT", "DIFF_SHA1"):  # written by the snapshot recipe in README
            if (root / name).exists():
                info[name.lower()] = (root / name).read_text().split()[0]
    return info


def _load() -> str:
    """The load average (1, 5, 15 minutes): other work on the machine moves the figures."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def compile_code_under_test() -> None:
    """Byte-compile digest's modules once, as an installed package has them: with
    PYTHONDONTWRITEBYTECODE set (as here), every `digest` process would compile them again."""
    import compileall

    import digest

    compileall.compile_dir(Path(digest.__file__).resolve().parent, quiet=1)


def _fmt(v: float | None, unit: str = "", digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}{unit}"


def fig_t2_t3_t4(args: argparse.Namespace, work: Path, out: dict[str, Any]) -> None:
    import fig_send
    import fig_sends
    import seed

    n_main = args.subscribers or (2000 if args.quick else 20000)
    small, large = (2000, 20000) if args.quick else (10000, 100000)
    if {"T2", "T3"} & args.only:
        out["sends"] = {}
        for n_items in args.sizes:
            _log(
                f" digest of {n_items} items: smtp-source and digest send ({', '.join(args.dkim)})"
            )
            out["sends"][str(n_items)] = fig_sends.run_size(
                work, n_items=n_items, subscribers=n_main, modes=args.dkim,
                repeats=args.repeats, budget=args.t2_budget, timeout=args.send_timeout, log=_log,
            )  # fmt: skip
    if "T4" in args.only:
        runs = {}
        for n in (small, large):
            t0 = time.monotonic()
            template = seed.sqlite_template(work, n)
            _log(f"  database with {n:,} subscribers ready ({time.monotonic() - t0:.0f} s)")
            r = fig_send.digest_send(template, n, work, label=f"rss-{n}", timeout=args.send_timeout)
            runs[n] = r
            _log(
                f"  digest send to {n:,}: peak RSS {r['maxrss_kb'] / 1024:.1f} MiB, "
                f"{fig_send.rate(r):,.0f} msg/s, ok={r['ok']}"
                + (f" PROBLEM: {r['problem']}" if r["problem"] else "")
            )
        a, b = runs[small], runs[large]
        out["T4"] = {
            "small": small,
            "large": large,
            "small_maxrss_kb": a["maxrss_kb"],
            "large_maxrss_kb": b["maxrss_kb"],
            "ratio": b["maxrss_kb"] / a["maxrss_kb"] if a["ok"] and b["ok"] else None,
            "runs": {str(k): v for k, v in runs.items()},
        }


def profile_send(args: argparse.Namespace, work: Path, out: dict[str, Any]) -> None:
    """`digest send` under py-spy, top frames. Only the thread holding the GIL is sampled
    (--gil): the sender is CPU-bound on one core, and 16 connection threads waiting for
    replies would otherwise drown the picture."""
    import shutil

    import fig_send
    import seed

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        _log("  py-spy not found: pip install py-spy")
        return
    n = 2000 if args.quick else 10000
    template = seed.sqlite_template(work, n)
    raw = work / "profile.txt"
    wrap = [
        spy,
        "record",
        "--gil",
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        str(raw),
        "--nonblocking",
        "--",
    ]
    r = fig_send.digest_send(
        template, n, work, label="profile", timeout=args.send_timeout, wrap=wrap
    )
    _log(
        f"  profiled digest send to {n:,}: ok={r['ok']} "
        f"({fig_send.rate(r):,.0f} msg/s under py-spy)"
    )
    if not raw.exists():
        _log("  py-spy wrote no profile")
        return
    out["profile"] = summarise_profile(raw)
    out["profile"]["messages"] = n


def summarise_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive share of samples per function, from py-spy's collapsed stacks."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        self_c[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    pct = lambda c: round(100 * c / total, 1)  # noqa: E731
    return {
        "samples": total,
        "self": [(f, pct(c)) for f, c in self_c.most_common(top)],
        "inclusive": [
            (f, pct(c)) for f, c in incl.most_common(60) if "(digest/" in f or "smtplib" in f
        ][:top],
    }


def _frame(f: str) -> str:
    # "function (path/to/file.py:123)" -> "function (…/package/file.py)"
    name, _, where = f.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else where
    if name.startswith("process ") or name.startswith("thread "):
        return ""
    return f"{name} ({short})"


def report(out: dict[str, Any]) -> str:
    rows = []
    import fig_sends

    t1, t4, t5, pg = (out.get(k) for k in ("T1", "T4", "T5", "PG"))
    if t1:
        rows.append(
            (
                "T1 per-recipient CPU (name mix)",
                _fmt(t1["render_us"], " µs", 1),
                _fmt(t1["emailmessage_us"], " µs"),
                f"{t1['ratio']:.0f}× cheaper",
                "≥ 50×",
                t1["ratio"] >= 50 and t1["equivalent"],
            )
        )
        for cls, v in t1["classes"].items():
            if cls != "mix":
                rows.append(
                    (
                        f"   T1, {cls}",
                        _fmt(v["render_us"], " µs", 1),
                        _fmt(v["emailmessage_us"], " µs"),
                        f"{v['ratio']:.0f}×",
                        "",
                        None,
                    )
                )
    sends = out.get("sends") or {}
    biggest = max((int(k) for k in sends), default=0)
    for key, v in sends.items():
        label = f"{v['message_bytes_on_wire'] / 1000:.1f} KB"
        rows.extend(fig_sends.rows(label, v, large=int(key) == biggest))
    if t4:
        rows.append(
            (
                f"T4 peak RSS {t4['large']:,} vs {t4['small']:,}",
                _fmt(t4["large_maxrss_kb"] / 1024, " MiB", 1),
                _fmt(t4["small_maxrss_kb"] / 1024, " MiB", 1),
                _ratio(t4["ratio"]),
                "≤ 1.2×",
                t4["ratio"] is not None and t4["ratio"] <= 1.2,
            )
        )
    if out.get("C"):
        rows.extend(fig_sends.connection_rows(out["C"]))
    if t5:
        rows.append(
            (
                f"T5 queue {t5['subscribers']:,} (SQLite)",
                _fmt(t5["create_issue_s"], " s", 2),
                _fmt(t5["raw_insert_select_s"], " s", 2),
                _ratio(t5["ratio"]),
                "≤ 2×",
                t5["ratio"] <= 2 and t5["ok"],
            )
        )
    if pg:
        if pg.get("pending"):
            rows.append(("PG 2 vs 1 workers", "pending", "", "", "report", None))
        else:
            rows.append(
                (
                    "PG 2 vs 1 workers",
                    _fmt(pg["2w"]["rate"], " msg/s"),
                    _fmt(pg["1w"]["rate"], " msg/s"),
                    _ratio(pg["ratio"]),
                    "report",
                    None,
                )
            )
    if out.get("TV"):
        import fig_variants

        rows += fig_variants.report_rows(out["TV"])
    head = ("figure", "digest", "reference", "ratio", "target", "met")
    cells = [head] + [(*r[:5], {True: "yes", False: "NO", None: ""}[r[5]]) for r in rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(head))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}×"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes (development only)")
    p.add_argument(
        "--only", default=",".join(FIGURES), help="comma-separated: T1,T2,T3,T4,T5,C,PG,TV"
    )
    p.add_argument(
        "--source",
        help="measure the digest in this folder (e.g. a `git archive` "
        "snapshot) instead of the installed one",
    )
    p.add_argument("--repeats", type=int, default=3, help="T2/T3 repeats of every side (default 3)")
    p.add_argument(
        "--sizes",
        default="33,12",
        help="T2/T3: digest sizes as numbers of news items (default 33,12: ~73 KB and ~30 KB)",
    )
    p.add_argument(
        "--dkim",
        default="none,rsa,ed25519",
        help="T2/T3: digest's signing modes, each a side of its own (default none,rsa,ed25519)",
    )
    p.add_argument("--subscribers", type=int, help="T2/T3 send size (default 20000; quick 2000)")
    p.add_argument("--results", help="folder for the JSON result (default bench/results)")
    p.add_argument(
        "--t2-budget",
        type=float,
        default=300,
        help="stop adding T2 pairs after this many seconds (default 300)",
    )
    p.add_argument("--send-timeout", type=float, default=1500, help="kill a send after this")
    p.add_argument("--profile", action="store_true", help="also profile `digest send` with py-spy")
    p.add_argument("--work", default="/tmp/digest-bench", help="scratch folder for databases")
    args = p.parse_args()
    args.only = {x.strip().upper() for x in args.only.split(",") if x.strip()}
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    args.dkim = tuple(x.strip().lower() for x in args.dkim.split(",") if x.strip())
    if "none" not in args.dkim or not set(args.dkim) <= {"none", "rsa", "ed25519"}:
        p.error("--dkim: a list of none, rsa, ed25519 that includes none")
    if args.source:
        src = str(Path(args.source).resolve())
        sys.path.insert(0, src)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (src, os.environ.get("PYTHONPATH")) if p
        )
    started = datetime.now(UTC)
    # A folder per run: seeded databases must match the schema of the digest under test.
    work = Path(args.work) / started.strftime("%Y%m%dT%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "code": code_under_test(),
        "figures": sorted(args.only),
    }
    out["load_before"] = _load()
    compile_code_under_test()
    _log(f"digest under test: {out['code']}")
    _log(f"machine: {out['machine']}")
    t0 = time.monotonic()
    if "T1" in args.only:
        import fig_render

        _log("T1: MessageTemplate.render() vs EmailMessage per recipient")
        out["T1"] = fig_render.run(quick=args.quick)
        _log(
            f"  message {out['T1']['message_bytes']:,} bytes, {out['T1']['items']} items; "
            f"equivalent={out['T1']['equivalent']} {out['T1']['problems'] or ''}"
        )
    if {"T2", "T3", "T4"} & args.only:
        _log("T2/T3/T4: digest send vs smtp-source, into smtp-sink on loopback")
        fig_t2_t3_t4(args, work, out)
    if "T5" in args.only:
        import fig_queue

        _log("T5: create_issue vs raw INSERT … SELECT")
        out["T5"] = fig_queue.run(
            work,
            subscribers=100_000 if args.quick else 1_000_000,
            repeats=1 if args.quick else 3,
            log=_log,
        )
    if "C" in args.only:
        import fig_sends

        _log("C: digest send at 1, 4 and 16 connections (reported)")
        out["C"] = fig_sends.run_connections(
            work, subscribers=1000 if args.quick else 5000, counts=(1, 4, 16),
            modes=tuple(m for m in args.dkim if m in ("none", "rsa")),
            timeout=args.send_timeout, log=_log,
        )  # fmt: skip
    if "PG" in args.only:
        import fig_postgres

        _log("PG: 1 vs 2 digest send --worker processes on PostgreSQL")
        try:
            out["PG"] = fig_postgres.run(
                work, n=2000 if args.quick else 20000, timeout=args.send_timeout, log=_log
            )
        except Exception as exc:  # the server may be absent: report, do not lose the rest
            out["PG"] = {"pending": True, "reason": f"{type(exc).__name__}: {exc}"}
        if out["PG"].get("pending"):
            _log(f"  pending: {out['PG']['reason']}")
    if "TV" in args.only:
        import fig_variants  # issue 15: 20 variants vs 1, see fig_variants.py

        _log("TV: one issue in 20 variants vs in 1, digest send into smtp-sink, alternated")
        out["TV"] = fig_variants.run(work, n=2000 if args.quick else 20_000,
                                     repeats=1 if args.quick else args.repeats, log=_log)  # fmt: skip
    if args.profile:
        _log("Profile: digest send under py-spy")
        profile_send(args, work, out)
    out["duration_s"] = round(time.monotonic() - t0, 1)
    for db in work.glob("*.db*"):
        db.unlink()  # up to ~200 MB each; logs stay in the folder
    table = report(out)
    _log("")
    _log(table)
    if "profile" in out:
        _log("\ndigest send profile, % of samples of the GIL-holding thread, self time:")
        for f, pct in out["profile"]["self"]:
            _log(f"  {pct:5.1f}%  {f}")
        _log("inclusive, digest and smtplib frames:")
        for f, pct in out["profile"]["inclusive"]:
            _log(f"  {pct:5.1f}%  {f}")
    results = Path(args.results) if args.results else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    name = started.strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "") + ".json"
    out["table"] = table
    out["load"] = {"before": out.pop("load_before"), "after": _load()}
    (results / name).write_text(json.dumps(out, indent=2, default=str))
    _log(f"load average before: {out['load']['before']}, after: {out['load']['after']}")
    _log(f"\n{out['duration_s']:.0f} s; results in {results / name}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
