"""A real aiosmtpd server on loopback that takes its time: each reply to MAIL, RCPT and the
final "." comes after a delay (awaited, so every connection is slow on its own, as a real
slow relay is), and the moment each MAIL FROM arrived is recorded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiosmtpd.controller import Controller

from digest.demo import free_port

from .smtp import RecordingHandler, SmtpServer


class SlowHandler(RecordingHandler):
    def __init__(self, server: SmtpServer, *, mail: float, rcpt: float, data: float) -> None:
        super().__init__(server)
        self.delays = {"mail": mail, "rcpt": rcpt, "data": data}
        self.mail_times: list[float] = []  # time.time() of every MAIL FROM, in order

    async def handle_MAIL(
        self, srv: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mail_times.append(time.time())
        await asyncio.sleep(self.delays["mail"])
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, srv: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.delays["rcpt"])
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delays["data"])
        return await super().handle_DATA(srv, session, envelope)


def start_slow_smtp(
    *, mail: float = 0.0, rcpt: float = 0.0, data: float = 0.0
) -> tuple[SmtpServer, Controller, SlowHandler]:
    server = SmtpServer("127.0.0.1", free_port())
    handler = SlowHandler(server, mail=mail, rcpt=rcpt, data=data)
    controller = Controller(handler, hostname=server.host, port=server.port)
    controller.start()
    return server, controller, handler
