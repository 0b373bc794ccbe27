"""Child processes with their own resource usage, and Postfix's smtp-sink / smtp-source.

Everything listens on 127.0.0.1 only. Every child has a deadline and is killed by its own pid
when it passes it; nothing is stopped by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from digest.demo import free_port

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"


@dataclass
class Finished:
    """How a child process ended, with its own CPU and peak memory (from wait4)."""

    returncode: int
    wall: float  # seconds from start to exit
    user: float
    sys: float
    maxrss_kb: int
    stdout: str = ""
    stderr: str = ""

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def _wait4(pid: int, deadline: float) -> tuple[int, os.struct_rusage | None]:
    """Poll for the child's exit; kill it (by pid) at the deadline."""
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return -9, usage
        time.sleep(0.005)


GNU_TIME = "/usr/bin/time"


def run_measured(
    cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float, log: Path
) -> Finished:
    """Run cmd to completion (bounded by timeout); stdout/stderr go to files next to `log`.

    CPU and peak RSS come from GNU time, which forks the command from its own small process:
    a child forked from this (large) Python process would report our RSS as its peak, because
    Linux keeps the pre-exec high-water mark in ru_maxrss.
    """
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    usage_path = log.with_suffix(".rusage")
    usage_path.unlink(missing_ok=True)
    wrapped = [GNU_TIME, "-q", "-f", "%U %S %M", "-o", str(usage_path), *cmd]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            wrapped,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        code = _wait(proc, start + timeout)
        wall = time.monotonic() - start
    fields = usage_path.read_text().split() if usage_path.exists() else []
    if len(fields) < 3:  # killed at the deadline: GNU time wrote nothing
        fields = ["nan", "nan", "0"]
    user, sys_, rss = fields[-3:]
    return Finished(
        returncode=code,
        wall=wall,
        user=float(user),
        sys=float(sys_),
        maxrss_kb=int(rss),
        stdout=out_path.read_text("utf-8", "replace"),
        stderr=err_path.read_text("utf-8", "replace"),
    )


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> int:
    """Wait for the child; at the deadline kill its process group (the one it leads)."""
    while proc.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9
        time.sleep(0.005)
    return proc.returncode


@dataclass
class Sink:
    """smtp-sink on a free loopback port, counting messages as they complete (-c).

    The counter line is read on a thread so the time of the first and the last accepted
    message is known: the sending window as the server saw it.
    """

    expected: int
    timeout: float
    delay: int = 0  # seconds before answering each DATA (-w): a relay that takes its time
    port: int = field(default_factory=free_port)
    messages: int = 0
    first_at: float | None = None
    last_at: float | None = None
    proc: subprocess.Popen[bytes] | None = None
    finished: Finished | None = None
    _reader: threading.Thread | None = None

    def start(self) -> Sink:
        cmd = [SMTP_SINK]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
        # -M: stop by itself after (more than) the expected number of messages, as a backstop.
        cmd += ["-w", str(self.delay)] if self.delay else []
        cmd += ["-c", "-M", str(self.expected * 2 + 1000), f"127.0.0.1:{self.port}", "256"]
        self._started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    s.recv(200)  # the greeting; counts as a session in smtp-sink's counters
                    return
            time.sleep(0.02)
        raise RuntimeError(f"smtp-sink did not start on port {self.port}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        pattern = re.compile(rb"mesg=(\d+)\r")
        tail = b""
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return
            now = time.monotonic()
            found = pattern.findall(tail + chunk)
            tail = (tail + chunk)[-40:]
            if found:
                n = int(found[-1])
                if n > self.messages:
                    if self.first_at is None:
                        self.first_at = now
                    self.last_at = now
                    self.messages = n

    @property
    def window(self) -> float | None:
        """Seconds between the first and last accepted message."""
        if self.first_at is None or self.last_at is None or self.messages < 2:
            return None
        return self.last_at - self.first_at

    def stop(self) -> Finished:
        assert self.proc is not None
        if self.proc.poll() is None:
            time.sleep(0.1)  # let the last counter update arrive
            self.proc.send_signal(signal.SIGTERM)
        code, usage = _wait4(self.proc.pid, time.monotonic() + 5)
        self.proc.returncode = code
        if self._reader:
            self._reader.join(2)
        assert usage is not None
        self.finished = Finished(
            code, time.monotonic() - self._started, usage.ru_utime, usage.ru_stime, usage.ru_maxrss
        )
        return self.finished

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.finished is None:
            self.stop()


def smtp_source(
    *, port: int, message_file: Path, messages: int, sessions: int, timeout: float, log: Path
) -> Finished:
    """Postfix's load generator: `sessions` parallel connections reused for every message (-d)."""
    cmd = [
        SMTP_SOURCE,
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-d",
        "-f",
        "news@partnership.example.org",
        "-t",
        "reader@example.net",
        "-M",
        "bench.localhost",
        "-F",
        str(message_file),
        f"127.0.0.1:{port}",
    ]
    return run_measured(cmd, env=dict(os.environ), cwd=log.parent, timeout=timeout, log=log)


@dataclass
class FarRelay:
    """A TCP proxy in front of `target_port` that holds every chunk `one_way` seconds in each
    direction: a relay `2 * one_way` seconds of round trip away (Debian's kernel here has no
    netem). Bandwidth is not limited, only latency added; the order of bytes is kept."""

    target_port: int
    one_way: float
    port: int = field(default_factory=free_port)

    def __enter__(self) -> FarRelay:
        self.stopped = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, server), (server, client)):
                self._pump(a, b)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        import queue

        held: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                held.put((time.monotonic() + self.one_way, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = held.get()
                time.sleep(max(0.0, due - time.monotonic()))
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()
