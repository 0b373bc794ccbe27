"""A tiny SMTP server on a loopback socket that answers exactly what a test scripts.

aiosmtpd is a correct server; this one is for the surprises a real relay springs that a
correct server never would: RCPT 252, 250 where 354 was due, a multi-line reply ending in an
unexpected code, a line that is not a reply at all, 250 and then hanging up, a greeting
that never comes, a reply trickled a byte a second, 421 beyond N connections.

A script is a function (connection, stage, argument) -> Say | str | None, called before each
reply; None gives the normal answer. Stages: greeting, ehlo, helo, mail, rcpt, data, dot
(the reply to the final "."), rset, noop, quit, other. The server records every command and
every message, and which messages it accepted (a 2xx reply to the final "." that it sent in
full), so a test can compare what the sender recorded as sent with what really arrived.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from digest.demo import free_port

IO_LIMIT = 60.0  # no connection of a test lives longer than this


@dataclass(frozen=True)
class Say:
    """A reply: `text` (lines joined by CRLF; a final CRLF is added), sent after `delay`
    seconds, one byte every `trickle` seconds if set; then the connection is closed if
    `close`. `silent`: say nothing at all and keep the connection open (until `hold`
    seconds have passed, or the client or the server closes it)."""

    text: str = ""
    delay: float = 0.0
    trickle: float = 0.0
    close: bool = False
    silent: bool = False
    hold: float = IO_LIMIT
    raw: bool = False  # send `text` as it is, no CRLF added


@dataclass
class Conn:
    number: int  # 1 for the first connection the server accepted
    commands: list[str] = field(default_factory=list)


@dataclass
class Message:
    conn: int
    mail_from: str
    rcpts: list[str]
    data: bytes
    dot_reply: str
    accepted: bool  # a 2xx to the final "." was sent in full
    mail_at: float  # time.time() when MAIL FROM arrived
    followed: bytes = b""  # what had already arrived behind the final "." (a pipelined client)


Script = Callable[[Conn, str, str], "Say | str | None"]

DEFAULT = {
    "greeting": "220 scripted.test ESMTP",
    "helo": "250 scripted.test",
    "mail": "250 2.1.0 OK",
    "rcpt": "250 2.1.5 OK",
    "data": "354 End data with <CR><LF>.<CR><LF>",
    "dot": "250 2.0.0 OK queued",
    "rset": "250 2.0.0 OK",
    "noop": "250 2.0.0 OK",
    "quit": "221 2.0.0 Bye",
    "other": "500 5.5.2 Command not recognised",
}


class ScriptedSmtp:
    def __init__(self, script: Script | None = None, *, extensions: tuple[str, ...] = ()) -> None:
        self.script = script
        self.extensions = list(extensions)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.lock = threading.Lock()
        self.conns: list[Conn] = []
        self.messages: list[Message] = []
        self.active = 0  # connections open now
        self.peak = 0  # most connections open at once
        self.accepted_tcp = threading.Event()  # set when the first connection is accepted
        self.data_read = threading.Event()  # set when a whole message (up to ".") was read
        self.stopped = threading.Event()
        self._socks: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.host, self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True, name="scripted-smtp").start()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def accepted(self) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.accepted]

    def accepted_rcpts(self) -> list[str]:
        """The recipients of every message accepted with content. (A pipelining client that
        got 354 after a refused MAIL or RCPT sends a lone "." to end the DATA it did not
        want; the server's 2xx to that empty message is not a delivery of the issue.)"""
        return [r for m in self.accepted() if m.data for r in m.rcpts]

    def commands(self) -> list[str]:
        with self.lock:
            return [c for conn in self.conns for c in conn.commands]

    def close(self) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> ScriptedSmtp:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # The server ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                conn = Conn(len(self.conns) + 1)
                self.conns.append(conn)
                self._socks.append(sock)
                self.active += 1
                self.peak = max(self.peak, self.active)
            self.accepted_tcp.set()
            threading.Thread(target=self._serve, args=(conn, sock), daemon=True).start()

    def _answer(self, conn: Conn, stage: str, arg: str, default: str) -> Say:
        got = self.script(conn, stage, arg) if self.script else None
        if got is None:
            return Say(default)
        return Say(got) if isinstance(got, str) else got

    def _say(self, sock: socket.socket, say: Say) -> bool:
        """Send a reply; False when the connection is over (closed by either side)."""
        if say.delay and self.stopped.wait(say.delay):
            return False
        if say.silent:
            deadline = time.monotonic() + say.hold
            sock.settimeout(0.2)
            while not self.stopped.is_set() and time.monotonic() < deadline:
                try:
                    if sock.recv(4096) == b"":
                        return False
                except TimeoutError:
                    continue
                except OSError:
                    return False
            return False
        data = say.text.encode() if say.raw else say.text.rstrip("\r\n").encode() + b"\r\n"
        try:
            if say.trickle:
                for i in range(len(data)):
                    if i and self.stopped.wait(say.trickle):
                        return False
                    sock.sendall(data[i : i + 1])
            elif data:
                sock.sendall(data)
        except OSError:
            return False
        return not say.close

    def _serve(self, conn: Conn, sock: socket.socket) -> None:
        sock.settimeout(IO_LIMIT)
        reader = sock.makefile("rb")
        mail_from, rcpts, mail_at = "", [], 0.0
        try:
            if not self._say(sock, self._answer(conn, "greeting", "", DEFAULT["greeting"])):
                return
            while not self.stopped.is_set():
                raw = reader.readline(65536)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self.lock:
                    conn.commands.append(line)
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    lines = ["scripted.test", *self.extensions, "HELP"]
                    default = "\r\n".join(
                        f"250{'-' if i < len(lines) - 1 else ' '}{text}"
                        for i, text in enumerate(lines)
                    )
                    say = self._answer(conn, "ehlo", arg, default)
                elif verb == "HELO":
                    say = self._answer(conn, "helo", arg, DEFAULT["helo"])
                elif verb == "MAIL":
                    mail_from, rcpts, mail_at = _address(arg), [], time.time()
                    say = self._answer(conn, "mail", mail_from, DEFAULT["mail"])
                elif verb == "RCPT":
                    rcpt = _address(arg)
                    say = self._answer(conn, "rcpt", rcpt, DEFAULT["rcpt"])
                    if say.text.startswith("25"):
                        rcpts.append(rcpt)
                elif verb == "DATA":
                    say = self._answer(conn, "data", rcpts[0] if rcpts else "", DEFAULT["data"])
                    if not self._say(sock, say):
                        return
                    if not say.text.startswith("354"):
                        continue  # still in command mode: whatever comes is read as commands
                    data = _read_message(reader)
                    if data is None:
                        return
                    self.data_read.set()
                    followed = _buffered(reader, sock)
                    dot = self._answer(conn, "dot", rcpts[0] if rcpts else "", DEFAULT["dot"])
                    sent = self._say(sock, dot)
                    accepted = dot.text[:1] == "2" and not dot.silent and (sent or dot.close)
                    with self.lock:
                        self.messages.append(
                            Message(conn.number, mail_from, list(rcpts), data,
                                    dot.text, accepted, mail_at, followed)
                        )  # fmt: skip
                    if not sent:
                        return
                    continue
                elif verb in ("RSET", "NOOP", "QUIT"):
                    say = self._answer(conn, verb.lower(), "", DEFAULT[verb.lower()])
                    if verb == "RSET":
                        mail_from, rcpts = "", []
                    if verb == "QUIT":
                        self._say(sock, say)
                        return
                else:
                    say = self._answer(conn, "other", line, DEFAULT["other"])
                if not self._say(sock, say):
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                reader.close()
            with contextlib.suppress(OSError):
                sock.close()
            with self.lock:
                self.active -= 1


def _address(arg: str) -> str:
    start, end = arg.find("<"), arg.find(">")
    return arg[start + 1 : end] if 0 <= start < end else arg.partition(":")[2].strip()


def _read_message(reader: object) -> bytes | None:
    """The message up to the lone "." (dot-stuffing undone); None if the line dropped."""
    out = bytearray()
    while True:
        raw = reader.readline(1 << 20)  # type: ignore[attr-defined]
        if not raw:
            return None
        if raw in (b".\r\n", b".\n"):
            return bytes(out)
        out += raw[1:] if raw.startswith(b"..") else raw


def _buffered(reader: Any, sock: socket.socket) -> bytes:
    """The bytes that have already arrived, unread, without waiting for more."""
    sock.setblocking(False)
    try:
        return bytes(reader.peek(65536))
    except (BlockingIOError, OSError):
        return b""
    finally:
        sock.settimeout(IO_LIMIT)
