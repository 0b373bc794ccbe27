"""The systemd units shipped in deploy/systemd/ are valid (systemd-analyze verify), fit the
README's schedule and set-up, and the user and folders they need are made as written."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parent.parent / "deploy" / "systemd"
README = Path(__file__).parent.parent / "README.md"
UNITS = ["digest-send.service", "digest-send.timer", "digest-serve.service"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package systemd): cannot verify the units")
    return path


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verified as shipped, except that /srv/digest is a folder here whose
    .venv/bin/digest is the digest command of this checkout (verify checks it exists)."""
    analyze = _tool("systemd-analyze")
    srv = tmp_path / "srv"
    (srv / ".venv" / "bin").mkdir(parents=True)
    digest = shutil.which("digest") or str(Path(__file__).parent.parent / ".venv/bin/digest")
    (srv / ".venv" / "bin" / "digest").symlink_to(digest)
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        text = (DEPLOY / name).read_text(encoding="utf-8")
        (units / name).write_text(text.replace("/srv/digest", str(srv)), encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", "--man=no", *(str(units / n) for n in UNITS)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    mentions = [ln for ln in done.stderr.splitlines() if "digest" in ln]
    assert mentions == [], mentions


def _directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_units_are_set_up_as_the_readme_says() -> None:
    send, serve, timer = (_directives(n) for n in
                          ("digest-send.service", "digest-serve.service", "digest-send.timer"))  # fmt: skip
    for unit in (send, serve):
        assert unit["User"] == ["digest"] and unit["WorkingDirectory"] == ["/srv/digest"]
        assert unit["EnvironmentFile"] == ["-/etc/digest/secrets.env"]  # optional file
        assert unit["UMask"] == ["0077"] and unit["ReadWritePaths"] == ["/srv/digest"]
    assert send["Type"] == ["oneshot"] and send["SuccessExitStatus"] == ["75"]
    assert send["ExecStart"] == ["/srv/digest/.venv/bin/digest send --scheduled --fetch"]
    assert serve["ExecStart"] == ["/srv/digest/.venv/bin/digest serve --host 127.0.0.1 --port 8000"]
    assert serve["Restart"] == ["on-failure"]
    readme = README.read_text(encoding="utf-8")
    for name in UNITS + ["digest.sysusers", "digest.tmpfiles"]:
        assert f"deploy/systemd/{name}" in readme, name
    assert f"OnCalendar={timer['OnCalendar'][0]}" in readme


def test_the_timer_runs_when_the_cron_line_does() -> None:
    """Mondays, every 30 minutes from 08:00 to 17:30, like `*/30 8-17 * * 1` in the README."""
    analyze = _tool("systemd-analyze")
    (spec,) = _directives("digest-send.timer")["OnCalendar"]
    done = subprocess.run([analyze, "calendar", "--iterations=21", spec],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    times = re.findall(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{4}-\d\d-\d\d (\d\d:\d\d):00", done.stdout)
    assert {day for day, _ in times} == {"Mon"}
    expected = [f"{h:02d}:{m:02d}" for h in range(8, 18) for m in (0, 30)]
    assert sorted({t for _, t in times}) == expected  # 21 runs: every slot of a Monday
    assert "*/30 8-17 * * 1" in README.read_text(encoding="utf-8")


def test_sysusers_and_tmpfiles_make_the_user_and_folders(tmp_path: Path) -> None:
    sysusers = _tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    done = subprocess.run([sysusers, f"--root={tmp_path}", str(DEPLOY / "digest.sysusers")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert re.search(r"^digest:x:\d+:\d+:digest newsletter:/srv/digest:/usr/sbin/nologin$",
                     passwd, re.M), passwd  # fmt: skip
    tmpfiles = _tool("systemd-tmpfiles")
    done = subprocess.run([tmpfiles, f"--root={tmp_path}", "--create", str(DEPLOY / "digest.tmpfiles")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    srv, etc = tmp_path / "srv" / "digest", tmp_path / "etc" / "digest"
    assert srv.is_dir() and (srv.stat().st_mode & 0o777) == 0o700
    assert etc.is_dir() and (etc.stat().st_mode & 0o777) == 0o700
