"""The SMTP client: one connection on an asyncio event loop, every reply read for the stage it
answers (RFC 5321, RFC 2920 pipelining, RFC 3207 STARTTLS, RFC 4954 AUTH).

One client serves every send: the bulk send runs many of these connections on one thread
(digest.send.run), and `SmtpSender` (digest.send.mailer) drives one from blocking code for the
single messages (test and review copies, confirmation emails). No thread per connection: the
GIL is never handed between threads, which on a fast relay cost more than the protocol. What
each reply means is digest.send.replies; the bytes on the wire, digest.send.smtp_wire.

Time is bounded as a whole: connecting and logging in, and a transaction up to its final
".", may take `transaction_seconds`; the reply to the "." `final_reply_seconds`, any other
`timeout`. The loop's ticker (digest.send.loop) cuts a connection past a deadline (a server
that trickles a byte a second cannot hold a send), and at once on a stop while connecting
or before the final "." (nothing can have been accepted then).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import socket
import ssl
import threading
from typing import Any

from digest.errors import ConfigError, DigestError, SmtpUnavailable
from digest.send.loop import Ticker
from digest.send.loop import ticker as loop_ticker
from digest.send.replies import SendResult, classify, judge, reply_text
from digest.send.smtp_wire import (
    Lost,
    Then,
    Wire,
    b64,
    default_hostname,
    envelope,
    mail_command,
    rcpt_command,
    tls_context,
)
from digest.smtp_url import SmtpConfig

STOP_GRACE_SECONDS = 3.0  # a reply to the final "." may still come this long after a stop


class SmtpConnection:
    """One SMTP connection, opened on first use and reopened after it drops. Its coroutines
    run on one event loop."""

    def __init__(
        self,
        cfg: SmtpConfig,
        local_hostname: str | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.local_hostname = local_hostname
        self.stop = stop
        self.wire: Wire | None = None
        self.pipelining = False
        self.max_size = 0
        self.features: dict[str, str] = {}
        self._pending: asyncio.Future[Any] | None = None  # connecting: cut by cancelling
        self._deadline: float | None = None
        self._stoppable_until: float | None = None
        self._read_limit = cfg.timeout
        self._read_since: float | None = None
        self._ticker: Ticker | None = None
        self.timed_out = False
        self.aborted = False
        # The envelope (MAIL, RCPT, DATA) of the next message, written right after the last
        # message's final "." on this wire; its three replies are still to be read.
        self._ahead: tuple[str, str, Wire] | None = None
        self._data_open = False  # 354 came and the final "." is not written yet

    # Deadlines -----------------------------------------------------------------------------

    def _arm(self, seconds: float, *, stoppable: bool, grace: float = 0.0) -> None:
        ticker = self._ticker
        loop = ticker.loop if ticker is not None else asyncio.get_running_loop()
        now = loop.time()
        self._deadline = now + seconds
        self._stoppable_until = now + grace if stoppable else None
        self.timed_out = self.aborted = False
        if ticker is None:
            ticker = self._ticker = loop_ticker(loop)
        ticker.arm(self)

    def _disarm(self) -> None:
        self._deadline = self._stoppable_until = None

    def _check(self, now: float) -> bool:
        """Cut the connection if it is late or told to stop; False when no longer armed."""
        if self._deadline is None:
            return False
        late = now >= self._deadline or (
            self._read_since is not None and now - self._read_since >= self._read_limit
        )
        stopping = (
            self.stop is not None
            and self._stoppable_until is not None
            and now >= self._stoppable_until
            and self.stop.is_set()
        )
        if not (late or stopping):
            return True
        self.timed_out = late
        self.aborted = True  # what is read from now on is not a reply
        self._deadline = None
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
        wire = self.wire
        if wire is not None:
            wire._fail("the connection was cut")
            if wire.transport is not None:
                wire.transport.abort()
        return False

    # Reading and writing -------------------------------------------------------------------

    def _write(self, *data: bytes) -> None:
        """Write these bytes in order; several go out in one writev, none copied into one."""
        wire = self.wire
        if wire is None or wire.lost is not None or wire.transport is None:
            raise Lost(wire.lost if wire is not None and wire.lost else "not connected")
        if len(data) == 1:
            wire.transport.write(data[0])
        else:
            wire.transport.writelines(data)

    async def _replies(self, n: int) -> list[tuple[int, bytes]]:
        """The next `n` replies (each waited for at most the read limit)."""
        wire = self.wire
        if wire is None:
            raise Lost("not connected")
        if len(wire.replies) < n:
            if wire.lost is not None:
                raise Lost(wire.lost)
            loop = asyncio.get_running_loop()
            wire.want = n
            wire.waiter = loop.create_future()
            self._read_since = loop.time()
            try:
                await wire.waiter
            finally:
                self._read_since = None
        if self.aborted:
            raise Lost("the connection was cut")
        return [wire.replies.popleft() for _ in range(n)]

    async def _command(self, line: str) -> tuple[int, bytes]:
        self._write(line.encode("ascii") + b"\r\n")
        return (await self._replies(1))[0]

    # Connecting ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection; raises SmtpUnavailable (temporary) or DigestError (setup)."""
        cfg = self.cfg
        if self.stop is not None and self.stop.is_set():
            raise SmtpUnavailable("not connecting: stopping")
        self._ticker = None  # the loop this runs on now has its own
        self._arm(cfg.transaction_seconds, stoppable=True)
        self._read_limit = cfg.timeout
        try:
            await self._open()
            code, resp = (await self._replies(1))[0]
            if code != 220:
                raise SmtpUnavailable(
                    f"{cfg.display} refused the connection: {reply_text(code, resp)}",
                    hint="Try again later; nothing was marked as sent.",
                )
            await self._ehlo()
            if cfg.security == "starttls":
                if "starttls" not in self.features:
                    raise DigestError(
                        f"{cfg.display} does not offer STARTTLS, which smtp+starttls:// requires",
                        hint="Check smtp_url: use the server's submission port, or smtps://.",
                    )
                code, resp = await self._command("STARTTLS")
                if code != 220:
                    raise Lost(f"STARTTLS refused: {reply_text(code, resp)}")
                await self._starttls()
                await self._ehlo()
            if cfg.user:
                await self._login(cfg.user, cfg.password or "")
        except DigestError:
            self._drop()
            raise
        except (OSError, asyncio.CancelledError, EOFError) as exc:
            self._drop()
            if isinstance(exc, asyncio.CancelledError) and not self.aborted:
                raise  # cancelled from outside, not cut by the ticker
            raise self._connect_error(exc) from None
        finally:
            self._disarm()
        try:
            self.max_size = int(self.features.get("size", "0").split()[0] or 0)
        except (ValueError, IndexError):
            self.max_size = 0
        self.pipelining = "pipelining" in self.features

    async def _open(self) -> None:
        cfg, loop = self.cfg, asyncio.get_running_loop()
        tls = tls_context(cfg) if cfg.security == "tls" else None
        self.wire = None
        task = asyncio.ensure_future(
            loop.create_connection(
                Wire, cfg.host, cfg.port, ssl=tls, server_hostname=cfg.host if tls else None
            )
        )
        self._pending = task
        try:
            _, wire = await task
        finally:
            self._pending = None
        self.wire = wire

    async def _starttls(self) -> None:
        loop, wire = asyncio.get_running_loop(), self.wire
        assert wire is not None and wire.transport is not None
        task = asyncio.ensure_future(
            loop.start_tls(
                wire.transport, wire, tls_context(self.cfg), server_hostname=self.cfg.host
            )
        )
        self._pending = task
        try:
            transport = await task
        finally:
            self._pending = None
        if transport is None:
            raise Lost("the connection closed during the TLS handshake")
        wire.transport = transport

    async def _ehlo(self) -> None:
        name = self.local_hostname or default_hostname()
        code, resp = await self._command(f"EHLO {name}")
        self.features = {}
        if code != 250:
            code, resp = await self._command(f"HELO {name}")
            if code != 250:
                raise Lost(f"HELO refused: {reply_text(code, resp)}")
            return
        for line in resp.decode("latin-1").split("\n")[1:]:
            keyword, _, params = line.partition(" ")
            keyword = keyword.lower()
            if keyword.startswith("auth="):  # the old form some servers still send
                keyword, params = "auth", keyword[5:] + " " + params
            if keyword:
                old = self.features.get(keyword, "")
                self.features[keyword] = f"{old} {params}".strip() if keyword == "auth" else params

    async def _login(self, user: str, password: str) -> None:
        """One AUTH attempt (PLAIN, else LOGIN, else CRAM-MD5): a server that is tried with
        one mechanism after another often hangs up or stalls; one clear 535 is better."""
        mechanisms = self.features.get("auth", "").upper().split()
        try:
            if "PLAIN" in mechanisms:
                plain = b64("\0" + user + "\0" + password)
                code, resp = await self._command(f"AUTH PLAIN {plain}")
            elif "LOGIN" in mechanisms:
                code, resp = await self._command(f"AUTH LOGIN {b64(user)}")
                if code == 334:
                    code, resp = await self._command(b64(password))
            elif "CRAM-MD5" in mechanisms:
                code, resp = await self._command("AUTH CRAM-MD5")
                if code == 334:
                    challenge = base64.b64decode(resp)
                    digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
                    code, resp = await self._command(b64(f"{user} {digest}"))
            else:
                raise ConfigError(
                    f"{self.cfg.display} offers no login this client can use "
                    f"(AUTH {' '.join(mechanisms) or 'not offered'})",
                    hint="Use a submission port that offers AUTH PLAIN or LOGIN over TLS.",
                )
        except Lost:
            if self.timed_out or (self.stop is not None and self.stop.is_set()):
                raise
            # Servers often hang up after failed attempts rather than answer 535.
            code, resp = 535, b"the server closed the connection during login"
        if code not in (235, 503):
            raise ConfigError(
                f"{self.cfg.display} refused the login for user {user!r}: {reply_text(code, resp)}",
                hint="Check the user in smtp_url and DIGEST_SMTP_PASSWORD.",
            )

    def _connect_error(self, exc: BaseException) -> DigestError:
        """What a failure to connect means: a setup problem, or try again later."""
        cfg = self.cfg
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DigestError(
                f"the TLS certificate of {cfg.host} could not be verified: {exc.verify_message}",
                hint="For a private CA set smtp_ca_file to its certificate (PEM).",
            )
        hint = (
            "Check smtp_url and that the server is running; queued deliveries stay queued and "
            "the next `digest send` resumes them."
        )
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, socket.gaierror):
            why = f"cannot resolve {cfg.host}"
        if self.timed_out:
            why = f"no answer within {cfg.transaction_seconds:g} seconds"
        elif self.stop is not None and self.stop.is_set():
            why = "stopped while connecting"
        return SmtpUnavailable(
            f"cannot connect to {cfg.display}: {why or type(exc).__name__}", hint=hint
        )

    # Sending -------------------------------------------------------------------------------

    async def send(
        self, envelope_from: str, recipient: str, message: bytes, then: Then | None = None
    ) -> SendResult:
        """Send prepared bytes (CRLF line ends, no line starting with '.') to one recipient.

        `then`, asked once the server is ready for the message's content: the envelope
        (sender, recipient) of the next message, or None. Its MAIL, RCPT and DATA go out in
        the same write as this message's content and final "." (RFC 2920 §3.1: message
        content may start a group), so the next transaction costs no round trip of its own;
        the next call to send must then be for that envelope."""
        fresh = self.wire is None
        if fresh:
            await self.connect()
        result = await self._transaction(envelope_from, recipient, message, then)
        if result is None and not fresh:
            # The server had closed the idle connection (some answer 250 and hang up): nothing
            # was tried, so try once more on a new connection, at once.
            await self.connect()
            result = await self._transaction(envelope_from, recipient, message, then)
        if result is None:
            return SendResult("temporary", 0, "connection lost before MAIL FROM was answered", True)
        return result

    async def _transaction(
        self, envelope_from: str, recipient: str, message: bytes, then: Then | None = None
    ) -> SendResult | None:
        """One transaction; None when the connection was already gone (nothing was tried)."""
        ahead, self._ahead = self._ahead, None
        written = ahead is not None and ahead[2] is self.wire and self.wire is not None
        if ahead is not None and (not written or ahead[:2] != (envelope_from, recipient)):
            # The server may be waiting for another message's content: start afresh.
            self._drop()
            return None
        if self.max_size and len(message) > self.max_size:
            if written:
                self._drop()  # its DATA may be open: the connection cannot be used as it is
            return SendResult(
                "permanent", 552,
                f"552 the message is {len(message)} bytes; {self.cfg.display} accepts at most "
                f"{self.max_size} (its SIZE)", fatal=True,
            )  # fmt: skip
        answered = dot_sent = False
        self._arm(self.cfg.transaction_seconds, stoppable=True)
        self._read_limit = self.cfg.timeout
        try:
            mail_cmd, rcpt_cmd = mail_command(envelope_from), rcpt_command(recipient)
            if self.pipelining:
                # RFC 2920: MAIL, RCPT and DATA in one write (or already written, after the
                # last message's "."), then their three replies.
                if not written:
                    self._write(mail_cmd + rcpt_cmd + b"DATA\r\n")
                mail = (await self._replies(1))[0]
                answered = True
                rcpt, data = await self._replies(2)
                # A server that opened DATA although MAIL or RCPT was not accepted: a lone "."
                # could deliver an empty message, so the connection is dropped instead (the
                # transaction dies with it).
                abandon = data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251))
                for stage, (code, resp) in (("mail", mail), ("rcpt", rcpt), ("data", data)):
                    if abandon:
                        self._drop()
                    refused = judge(stage, code, resp)
                    if refused is not None:
                        return await self._after_refusal(refused)
            else:
                self._write(mail_cmd)
                code, resp = (await self._replies(1))[0]
                answered = True
                for stage in ("mail", "rcpt", "data"):
                    if stage == "rcpt":
                        self._write(rcpt_cmd)
                        code, resp = (await self._replies(1))[0]
                    elif stage == "data":
                        self._write(b"DATA\r\n")
                        code, resp = (await self._replies(1))[0]
                    refused = judge(stage, code, resp)
                    if refused is not None:
                        return await self._after_refusal(refused)
            # The message is already in wire form: send it as is, then the lone dot (not
            # appended to it: that copied every message once more), then the next envelope.
            self._data_open = True
            following = await then() if then is not None and self.pipelining else None
            if following is None:
                self._write(message, b".\r\n")
            else:
                self._write(message, b".\r\n", envelope(*following))
                assert self.wire is not None
                self._ahead = (*following, self.wire)
            self._data_open = False
            dot_sent = True
            # From here the server may have taken it: a stop waits a little for the reply,
            # which may take up to final_reply_seconds (not only smtp_timeout) to come.
            self._arm(self.cfg.final_reply_seconds, stoppable=True, grace=STOP_GRACE_SECONDS)
            self._read_limit = self.cfg.final_reply_seconds
            code, resp = (await self._replies(1))[0]
        except (OSError, EOFError) as exc:  # lost, cut, or a reply line we cannot read
            timed_out = self.timed_out
            self._drop()
            if not answered:
                return None
            if not dot_sent and not timed_out and self.stop is not None and self.stop.is_set():
                return SendResult("temporary", 0, "stopped before the message was sent", True,
                                  untried=True)  # fmt: skip
            # Lost before a final reply: unknown whether it was taken; try again later with the
            # same Message-ID so a receiver can tell a duplicate.
            why = "no reply in time" if timed_out else f"{exc or type(exc).__name__}"
            return SendResult("temporary", 0, f"connection lost: {why}"[:500], True)
        finally:
            self._disarm()
            self._read_limit = self.cfg.timeout
        if code == 421 or code < 0:
            self._drop()  # closing, or a reply we cannot parse: the connection is not usable
        if code == 552:
            # RFC 5321: at the end of DATA, 552 is about the message (its size), not the recipient
            return SendResult("permanent", code, reply_text(code, resp), fatal=True)
        return SendResult(classify(code), code, reply_text(code, resp), connection_lost=code < 0)

    async def _after_refusal(self, result: SendResult) -> SendResult:
        """A refused stage: RSET, or drop an unusable connection (421, a protocol error)."""
        if result.code == 421 or result.connection_lost or self.wire is None:
            self._drop()
            return result
        try:
            self._arm(self.cfg.timeout, stoppable=True)
            await self._command("RSET")
        except (OSError, EOFError):
            self._drop()
        finally:
            self._disarm()
        return result

    def _drop(self) -> None:
        self._ahead, self._data_open = None, False
        wire, self.wire = self.wire, None
        if wire is not None and wire.transport is not None:
            wire.transport.abort()

    async def close(self) -> None:
        if self._ahead is not None or self._data_open:
            # A DATA may be open: QUIT would be read as a message's content. The server
            # drops a message whose "." never comes.
            self._drop()
        if self.wire is not None:
            self._arm(min(self.cfg.timeout, 5.0), stoppable=False)
            with contextlib.suppress(OSError, EOFError):
                await self._command("QUIT")
            self._disarm()
            self._drop()
