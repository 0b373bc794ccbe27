"""T2, T3 and the DKIM figures D1/D2: `digest send` against `smtp-source`, at each digest size,
unsigned and DKIM-signed (RSA-2048, Ed25519), every side alternated within each repeat.

Per repeat, smtp-source goes first on even repeats and last on odd ones, and the order of
digest's signing modes rotates, so a machine that gets busier during the run slows every side
alike. Medians over the repeats are used; every run is kept in the JSON.

The DKIM reference (bench/dkim_cost.py) is measured in the same run, in this process, right
after the sends of each size: one OpenSSL RSA-2048 PKCS#1 v1.5 signature plus the SHA-256 of
the body (and the same with Ed25519). D1 is digest's extra CPU per message when signing
(median of the signed runs minus median of the unsigned ones) over that reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim_cost
import fig_send
import seed

MODES = ("none", "rsa", "ed25519")
FAR_RTT = 0.010  # seconds of round trip to the "far" relay of figure C
FAR_MESSAGES = 300


def run_size(
    work: Path,
    *,
    n_items: int,
    subscribers: int,
    modes: tuple[str, ...],
    repeats: int,
    budget: float,
    timeout: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    message, size = fig_send.message_file(work, n_items)
    t0 = time.monotonic()
    template = seed.sqlite_template(work, subscribers, n_items=n_items)
    log(
        f"  {n_items} items, {size:,} bytes on the wire; database with {subscribers:,} "
        f"subscribers ready ({time.monotonic() - t0:.0f} s)"
    )
    envs = {m: {} if m == "none" else fig_send.dkim_env(work, m) for m in modes}
    runs: dict[str, list[dict[str, Any]]] = {"smtp_source": [], **{m: [] for m in modes}}
    started = time.monotonic()
    for i in range(repeats):
        order = list(modes[i % len(modes) :] + modes[: i % len(modes)])
        sides = ["smtp_source", *order] if i % 2 == 0 else [*order, "smtp_source"]
        for side in sides:
            label = f"{n_items}items-{side}-{i}"
            if side == "smtp_source":
                r = fig_send.source_send(message, subscribers, work, label=label, timeout=300)
            else:
                r = fig_send.digest_send(
                    template, subscribers, work, label=label, timeout=timeout,
                    extra_env=envs[side],
                )  # fmt: skip
            runs[side].append(r)
            what = "smtp-source" if side == "smtp_source" else f"digest send ({side})"
            outside = (
                f", {r['before_first_s']:.2f} s before the first message and "
                f"{r['after_last_s']:.2f} s after the last"
                if r.get("before_first_s") is not None and r.get("after_last_s") is not None
                else ""
            )
            log(
                f"  run {i + 1} {what:22} {_fmt(fig_send.rate(r))} msg/s end to end, "
                f"{_fmt(fig_send.rate(r, 'sink_window_s'))} in the window, "
                f"{fig_send.cpu_per_msg(r) * 1e6:.0f} µs CPU/msg{outside}, ok={r['ok']}"
                + (f" PROBLEM: {r['problem']}" if r["problem"] else "")
            )
        if i + 1 < repeats and time.monotonic() - started > budget:
            log(f"  (stopping after {i + 1} repeat(s): over the {budget:.0f} s budget)")
            break
    wire = message.read_bytes().replace(b"\n", b"\r\n")
    reference = dkim_cost.reference_costs(wire)
    log(
        f"  reference: RSA-2048 sign + SHA-256 of the body "
        f"{reference['rsa2048_sign_plus_sha256_us']:.0f} µs, Ed25519 + SHA-256 "
        f"{reference['ed25519_sign_plus_sha256_us']:.0f} µs"
    )
    return summarise(runs, reference, n_items=n_items, size=size, subscribers=subscribers)


def summarise(
    runs: dict[str, list[dict[str, Any]]],
    reference: dict[str, Any],
    *,
    n_items: int,
    size: int,
    subscribers: int,
) -> dict[str, Any]:
    med = fig_send.median
    sides: dict[str, Any] = {}
    for side, rs in runs.items():
        good = [r for r in rs if r["ok"]]
        sides[side] = {
            "runs": len(rs),
            "valid": len(good),
            "rate": med([fig_send.rate(r) for r in good]),
            "window_rate": med([fig_send.rate(r, "sink_window_s") for r in good]),
            "cpu_us_per_msg": _us(med([fig_send.cpu_per_msg(r) for r in good])),
            "sink_cpu_us_per_msg": _us(med([r["sink_cpu_s"] / r["messages"] for r in good])),
            "maxrss_kb": med([r["maxrss_kb"] for r in good]),
            "before_first_s": med([r.get("before_first_s") for r in good]),
            "after_last_s": med([r.get("after_last_s") for r in good]),
        }
    src = sides["smtp_source"]
    for side, v in sides.items():
        if side == "smtp_source":
            continue
        v["ratio"] = _div(v["rate"], src["rate"])
        v["ratio_window"] = _div(v["window_rate"], src["window_rate"])
        v["cpu_ratio"] = _div(v["cpu_us_per_msg"], src["cpu_us_per_msg"])
    none = sides.get("none", {})
    for side, key in (("rsa", "rsa2048_sign_plus_sha256_us"),
                      ("ed25519", "ed25519_sign_plus_sha256_us")):  # fmt: skip
        v = sides.get(side)
        if v is None or none.get("cpu_us_per_msg") is None or v["cpu_us_per_msg"] is None:
            continue
        v["extra_cpu_us_per_msg"] = v["cpu_us_per_msg"] - none["cpu_us_per_msg"]
        v["reference_us"] = reference[key]
        v["extra_vs_reference"] = v["extra_cpu_us_per_msg"] / reference[key]
    return {
        "items": n_items,
        "message_bytes_on_wire": size,
        "subscribers": subscribers,
        "sides": sides,
        "reference": reference,
        "runs": runs,
    }


def rows(label: str, s: dict[str, Any], *, large: bool) -> list[tuple[Any, ...]]:
    """Report rows for one size: (figure, digest, reference, ratio, target, met)."""
    sides, src = s["sides"], s["sides"]["smtp_source"]
    out: list[tuple[Any, ...]] = []
    none = sides.get("none")
    if none:
        out += [
            (f"T2 send rate, end to end ({label})", _fmt(none["rate"], " msg/s"),
             _fmt(src["rate"], " msg/s"), _ratio(none["ratio"]), "≥ 0.85×",
             _met(none["ratio"], 0.85, above=True)),
            ("   T2, sending window (sink)", _fmt(none["window_rate"], " msg/s"),
             _fmt(src["window_rate"], " msg/s"), _ratio(none["ratio_window"]), "", None),
            (f"T3 sender CPU per message ({label})", _fmt(none["cpu_us_per_msg"], " µs"),
             _fmt(src["cpu_us_per_msg"], " µs"), _ratio(none["cpu_ratio"]), "≤ 3.5×",
             _met(none["cpu_ratio"], 3.5, above=False)),
        ]  # fmt: skip
    rsa = sides.get("rsa")
    if rsa and "extra_vs_reference" in rsa:
        out += [
            (f"D1 DKIM RSA-2048 extra CPU/msg ({label})",
             _fmt(rsa["extra_cpu_us_per_msg"], " µs"), _fmt(rsa["reference_us"], " µs"),
             _ratio(rsa["extra_vs_reference"]), "≤ 1.5×",
             _met(rsa["extra_vs_reference"], 1.5, above=False)),
        ]  # fmt: skip
    if rsa:
        out.append(
            (f"D2 DKIM RSA-2048 send rate ({label})", _fmt(rsa["rate"], " msg/s"),
             _fmt(src["rate"], " msg/s"), _ratio(rsa["ratio"]), "≥ 0.6×" if large else "report",
             _met(rsa["ratio"], 0.6, above=True) if large else None)
        )  # fmt: skip
    ed = sides.get("ed25519")
    if ed and "extra_vs_reference" in ed:
        out += [
            ("   Ed25519 extra CPU/msg", _fmt(ed["extra_cpu_us_per_msg"], " µs"),
             _fmt(ed["reference_us"], " µs"), _ratio(ed["extra_vs_reference"]), "report", None),
            ("   Ed25519 send rate", _fmt(ed["rate"], " msg/s"), _fmt(src["rate"], " msg/s"),
             _ratio(ed["ratio"]), "report", None),
        ]  # fmt: skip
    return out


def _met(v: float | None, bound: float, *, above: bool) -> bool | None:
    if v is None:
        return False
    return v >= bound if above else v <= bound


def _us(v: float | None) -> float | None:
    return None if v is None else v * 1e6


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(v: float | None, unit: str = "", digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}{unit}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}×"


def run_connections(
    work: Path,
    *,
    subscribers: int,
    counts: tuple[int, ...],
    modes: tuple[str, ...],
    timeout: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Figure C (reported): `digest send` at several smtp_connections, unsigned and signed,
    into smtp-sink on loopback, where a transaction costs no network round trip: what one more
    connection buys when the sender, not the relay, is the limit. Then "slow": 32 messages
    into a sink that waits 1 s before answering each DATA (a relay that scans every message,
    or one far away): there the connections are the limit."""
    message, size = fig_send.message_file(work)
    template = seed.sqlite_template(work, subscribers)
    envs = {m: {} if m == "none" else fig_send.dkim_env(work, m) for m in modes}
    out: dict[str, Any] = {"subscribers": subscribers, "message_bytes_on_wire": size, "runs": {}}
    for mode in modes:
        for c in counts:
            r = fig_send.digest_send(
                template, subscribers, work, label=f"conn-{mode}-{c}", timeout=timeout,
                connections=c, extra_env=envs[mode],
            )  # fmt: skip
            out["runs"][f"{mode}-{c}"] = r
            log(
                f"  {mode:8} {c:2} connection(s): {_fmt(fig_send.rate(r))} msg/s end to end, "
                f"{_fmt(fig_send.rate(r, 'sink_window_s'))} in the window, "
                f"{fig_send.cpu_per_msg(r) * 1e6:.0f} µs CPU/msg, ok={r['ok']}"
            )
    # A relay 10 ms of round trip away (another data centre): there each round trip counts.
    template_far = seed.sqlite_template(work, FAR_MESSAGES)
    for c in counts[:2]:
        r = fig_send.digest_send(
            template_far, FAR_MESSAGES, work, label=f"conn-far-{c}", timeout=timeout,
            connections=c, rtt=FAR_RTT,
        )  # fmt: skip
        out["runs"][f"far-{c}"] = r
        log(f"  relay {FAR_RTT * 1000:.0f} ms away {c:2} connection(s): "
            f"{_fmt(fig_send.rate(r), '', 1)} msg/s end to end, ok={r['ok']}")  # fmt: skip
    template_slow = seed.sqlite_template(work, 32)
    for c in counts:
        r = fig_send.digest_send(
            template_slow, 32, work, label=f"conn-slow-{c}", timeout=timeout, connections=c,
            sink_delay=1,
        )  # fmt: skip
        out["runs"][f"slow-{c}"] = r
        log(f"  slow relay (1 s per DATA) {c:2} connection(s): {_fmt(fig_send.rate(r), '', 1)} "
            f"msg/s end to end, ok={r['ok']}")  # fmt: skip
    return out


def connection_rows(c: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    base: dict[str, float | None] = {}
    for key, r in c["runs"].items():
        mode, n = key.rsplit("-", 1)
        rate = fig_send.rate(r) if r["ok"] else None
        base.setdefault(mode, rate)
        who = {"slow": "32, slow relay", "far": f"{FAR_MESSAGES}, relay 10 ms away"}.get(
            mode, f"{c['subscribers']:,}"
        )
        digits = 1 if mode in ("slow", "far") else 0
        rows.append(
            (f"C {mode}, {n} connection(s), {who}", _fmt(rate, " msg/s", digits),
             _fmt(base[mode], " msg/s", digits), _ratio(_div(rate, base[mode])), "report", None)
        )  # fmt: skip
    return rows
