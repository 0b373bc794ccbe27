"""A real SMTP server on loopback (aiosmtpd) that records what it accepted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from digest.demo import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SmtpServer:
    """A real SMTP server on loopback that records what it accepted.

    `reply` may be set to a function (rcpt, data) -> SMTP reply string or None (accept),
    to script 4xx/5xx answers; `on_data` runs for every message before the reply.
    """

    host: str
    port: int
    messages: list[Received] = field(default_factory=list)
    reply: Callable[[str, bytes], str | None] | None = None
    on_data: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def by_rcpt(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for m in self.messages:
            for r in m.rcpt_tos:
                out.setdefault(r, []).append(m)
        return out

    def wait_for(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.01)


class RecordingHandler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
        rec = Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        if self.server.on_data:
            self.server.on_data(rec)
        if self.server.reply:
            answer = self.server.reply(rec.rcpt_tos[0], rec.data)
            if answer:
                return answer
        with self.server.lock:
            self.server.messages.append(rec)
        return "250 2.0.0 OK queued"


def start_smtp(**controller_kw: Any) -> tuple[SmtpServer, Controller]:
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(
        RecordingHandler(server), hostname=server.host, port=server.port, **controller_kw
    )
    controller.start()
    return server, controller
