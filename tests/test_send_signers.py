"""DKIM signatures made by helper processes (digest.send.signers, issue 11): the same bytes as
the send process makes, every message of a real send verifying with dkimpy, and no message lost
or left unsigned when a helper cannot start, refuses the key, answers wrongly or dies."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest

from digest.compose.dkim import DkimSigner, load_signer, parse_key
from digest.config_load import load_settings
from digest.send import signers as signers_module
from digest.send.policy import signing_helpers
from digest.send.signers import Signers

from .helpers.keys import dkim_settings, dns_for, ed25519_pem, rsa_pem, signed_message
from .helpers.smtp import SmtpServer

KEYS = {"rsa-2048": rsa_pem, "ed25519": ed25519_pem}
WHEN = 1_780_000_000


def _signer(make_key: Callable[[], bytes]) -> DkimSigner:
    return DkimSigner("example.org", "s1", *parse_key(make_key()))


async def _until_ready(signers: Signers, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(h.ready for h in signers.helpers) or not signers.helpers:
        assert asyncio.get_running_loop().time() < deadline, "the helpers never said OK"
        await asyncio.sleep(0.01)


def _unsigned_messages(signer: DkimSigner, n: int) -> list[bytes]:
    out = []
    for i in range(1, n + 1):
        m = signed_message(signer, i)
        out.append(m[m.index(b"\r\nFrom: ") + 2 :])  # without the signature made here
    return out


@pytest.mark.parametrize("make_key", KEYS.values(), ids=KEYS.keys())
def test_helpers_make_the_send_processs_signatures(make_key: Callable[[], bytes]) -> None:
    """RSA PKCS#1 v1.5 and Ed25519 are deterministic: a helper's message is byte for byte the
    one DkimSigner.sign makes in this process, and the work is shared between the helpers."""
    signer = _signer(make_key)
    messages = _unsigned_messages(signer, 40)

    async def run() -> tuple[list[bytes], Signers]:
        signers = Signers(signer, 2)
        await signers.start()
        await _until_ready(signers)
        for helper in signers.helpers:  # below the send loop's priority
            nice = int(
                Path(f"/proc/{helper.process.pid}/stat").read_text().rsplit(")")[1].split()[16]
            )
            assert nice == os.nice(0) + 5
        try:
            made = await asyncio.gather(
                *(signers.sign(signer.prepare(m, timestamp=WHEN)) for m in messages)
            )
        finally:
            await signers.close()
        return list(made), signers

    made, signers = asyncio.run(run())
    assert made == [signer.sign(m, timestamp=WHEN) for m in messages]
    assert signers.signed_here == 0 and signers.signed_by_helpers == len(messages)
    for m in made:
        assert dkim.verify(m, dnsfunc=dns_for(signer))


FAULTY = {
    # says OK, then answers every digest with zeros
    "answers wrongly": """
import os, sys
head = sys.stdin.buffer.read(9)
sys.stdin.buffer.read(int.from_bytes(head[5:9], "big"))
os.write(1, b"OK" + (256).to_bytes(2, "big"))
while sys.stdin.buffer.read(32):
    os.write(1, bytes(256))
""",
    # says OK, then reads what it is sent and never answers
    "never answers": """
import os, sys
head = sys.stdin.buffer.read(9)
sys.stdin.buffer.read(int.from_bytes(head[5:9], "big"))
os.write(1, b"OK" + (256).to_bytes(2, "big"))
while sys.stdin.buffer.read(32):
    pass
""",
    "refuses the key": """
import os, sys
why = b"ValueError: no such key"
os.write(1, b"NO" + len(why).to_bytes(2, "big") + why)
sys.exit(1)
""",
}


@pytest.mark.parametrize("fault", ["dies", *FAULTY, "cannot start", "no python"])
def test_a_failing_helper_costs_no_message(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever a helper does wrong, every message comes back signed (here, in the send
    process) and verifies, and the warning says which helper stopped and why."""
    if fault == "dies":  # the real helper, which exits once it has answered what it first read
        real = Path(signers_module.__file__).with_name("sign_worker.py").read_text()
        script = real.replace(
            "        pending = pending[whole:]\n",
            "        pending = pending[whole:]\n        sys.stderr.write('boom\\n')\n"
            "        sys.exit(3)\n",
        )
        assert script != real
    elif fault in ("cannot start", "no python"):
        script = None  # a script that is not there; or no interpreter to run it with
        if fault == "no python":
            monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    else:
        script = FAULTY[fault]
    worker = tmp_path / "worker.py"
    if script is not None:
        worker.write_text(script)
    monkeypatch.setattr(signers_module, "WORKER", worker)
    monkeypatch.setattr(signers_module, "ANSWER_SECONDS", 0.5)
    signer = _signer(rsa_pem)
    messages = _unsigned_messages(signer, 12)

    async def run() -> tuple[list[bytes], Signers]:
        signers = Signers(signer, 1)
        await signers.start()
        if fault in ("dies", "answers wrongly", "never answers"):
            await _until_ready(signers)  # the fault comes after the OK
        else:
            while signers.helpers:  # until it is dropped
                await asyncio.sleep(0.01)
        try:
            made = []
            for chunk in (messages[:6], messages[6:]):
                made += await asyncio.gather(
                    *(signers.sign(signer.prepare(m, timestamp=WHEN)) for m in chunk)
                )
        finally:
            await signers.close()
        return made, signers

    with caplog.at_level(logging.INFO, logger="digest.send"):
        made, signers = asyncio.run(run())
    assert made == [signer.sign(m, timestamp=WHEN) for m in messages]
    assert signers.signed_here + signers.signed_by_helpers == len(messages)
    if fault == "dies":  # it answered (part of) the first six, then exited
        assert 1 <= signers.signed_by_helpers <= 6
    else:
        assert signers.signed_by_helpers == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    expected = {
        "dies": "exited with code 3: boom",
        "answers wrongly": "its signature did not verify",
        "never answers": "it owed 6 signatures and made none for 0.5 s",
        "refuses the key": "ValueError: no such key",
        "cannot start": "exited with code 2",
        "no python": "not started",
    }[fault]
    assert "DKIM signing helper" in warnings[0] and expected in warnings[0], warnings[0]


def test_ctrl_c_does_not_end_a_helper() -> None:
    """Ctrl-C reaches the whole process group; the helper goes on until the send process
    closes its input, so what the send asked for is still answered."""
    signer = _signer(rsa_pem)
    message = _unsigned_messages(signer, 1)[0]

    async def run() -> bytes:
        signers = Signers(signer, 1)
        await signers.start()
        await _until_ready(signers)
        try:
            os.kill(signers.helpers[0].process.pid, signal.SIGINT)
            await asyncio.sleep(0.2)
            assert signers.helpers and signers.helpers[0].process.returncode is None
            return await signers.sign(signer.prepare(message, timestamp=WHEN))
        finally:
            await signers.close()

    assert asyncio.run(run()) == signer.sign(message, timestamp=WHEN)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux: CPU affinity")
def test_how_many_helpers() -> None:
    assert signing_helpers(3, 1) == 3  # the setting wins
    assert signing_helpers(0, 16) == 0
    assert signing_helpers(None, 1) == 0  # one connection: nothing to overlap
    cores = sorted(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, cores[:1])
        assert signing_helpers(None, 16) == 0  # one core: nothing to overlap either
        if len(cores) >= 2:
            os.sched_setaffinity(0, cores[:2])
            assert signing_helpers(None, 16) == 2  # a core each
    finally:
        os.sched_setaffinity(0, cores)


def _helpers_of(pid: int) -> list[int]:
    """Live processes started by `pid` that run the signing helper."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"sign_worker.py" in cmdline and " Z " not in stat:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("make_key", KEYS.values(), ids=KEYS.keys())
def test_a_send_signed_by_helpers_verifies(
    make_key: Callable[[], bytes], env: dict[str, str], cli: Callable[..., Any], workdir: Path,
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A real `digest send` over 4 connections with 2 helpers, to aiosmtpd: dkimpy verifies
    every message, the helpers made the signatures, and none is left running."""
    signing = dkim_settings(workdir, make_key(), SMTP_CONNECTIONS="4", DKIM_SIGNING_PROCESSES="2")
    for name, value in signing.items():
        monkeypatch.setenv(name, value)
    people = [f"reader{i}@example.net" for i in range(300)]  # the helpers start in ~30 ms
    (workdir / "list.csv").write_text("\n".join(["email", *people]) + "\n")
    r = cli("subscribers", "import", "list.csv")
    assert r.exit_code == 0, r.output
    r = cli("news", "add", "--title", "Signed elsewhere", "--url", "https://example.org/s")
    assert r.exit_code == 0, r.output
    with caplog.at_level(logging.INFO, logger="digest.send"):
        r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    signer = load_signer(load_settings().settings)
    assert signer is not None
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(people)
    for m in smtp_server.messages:
        assert dkim.verify(m.data, dnsfunc=dns_for(signer)), m.rcpt_tos
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("DKIM: ")]
    assert len(said) == 1, said
    by_helpers = int(said[0].split()[1])
    assert by_helpers > 0 and f"by 2 helper processes, {len(people) - by_helpers} in" in said[0]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _helpers_of(os.getpid()) == []


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signed_send_stopped_by_a_signal_to_its_group_resumes(
    sig: signal.Signals, env: dict[str, str], cli: Callable[..., Any], workdir: Path,
    smtp_server: SmtpServer,
) -> None:  # fmt: skip
    """Ctrl-C in a terminal, or systemd stopping the unit, signals the send and its helpers
    together: the helpers go on until the send ends them (no warning, none left running), the
    send stops with 130, and the next run sends the rest, every message signed and once."""
    over = {**env, **dkim_settings(workdir, rsa_pem(), SMTP_CONNECTIONS="4",
                                   DKIM_SIGNING_PROCESSES="2")}  # fmt: skip
    people = [f"reader{i}@example.net" for i in range(300)]
    (workdir / "list.csv").write_text("\n".join(["email", *people]) + "\n")
    assert cli("subscribers", "import", "list.csv").exit_code == 0
    r = cli("news", "add", "--title", "Signed", "--url", "https://example.org/s")
    assert r.exit_code == 0, r.output
    proc: list[subprocess.Popen[bytes]] = []
    helpers: list[int] = []

    def on_data(_: object) -> None:
        time.sleep(0.005)  # a relay slow enough for the signal to come mid-send
        if len(smtp_server.messages) == 60 and proc and not helpers:
            helpers.extend(_helpers_of(proc[0].pid))
            os.killpg(proc[0].pid, sig)

    smtp_server.on_data = on_data
    command = [sys.executable, "-m", "digest", "send", "--yes"]
    proc.append(subprocess.Popen(command, env={**os.environ, **over}, start_new_session=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    _, err = proc[0].communicate(timeout=120)
    assert proc[0].returncode == 130, err.decode()
    assert len(helpers) == 2  # both were running when the signal came
    assert b"helper" not in err, err.decode()
    assert not [pid for pid in helpers if Path(f"/proc/{pid}").exists()]
    first = len(smtp_server.messages)
    assert 60 <= first < 300
    smtp_server.on_data = None
    resumed = subprocess.run(command, env={**os.environ, **over}, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(people)
    signer = load_signer(load_settings(environ=over).settings)
    assert signer is not None
    for m in smtp_server.messages:
        assert dkim.verify(m.data, dnsfunc=dns_for(signer)), m.rcpt_tos
