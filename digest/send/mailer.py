"""SMTP delivery of prepared message bytes, every reply read for the stage it answers.

RFC 5321 and EMAIL-RULES.md: only a 2xx to the final "." means the message was accepted. A
5xx at MAIL FROM or a 552 at the final "." is about the sender or the message, not the
recipient (`fatal`: the run stops and the rest stays queued). A 5xx at RCPT is permanent for
that recipient, except 552 (temporary, §4.5.3.1.10). 4xx is temporary. A reply of the wrong
kind (a 2xx where a 354 was due, RCPT 252) or one that cannot be parsed is a broken
connection: temporary, and the connection is dropped.

Time is bounded as a whole, not only per read: connecting and logging in, and one transaction
up to its final ".", may take `transaction_seconds` in all; the reply to the "." may take
`final_reply_seconds`. A watchdog shuts the socket down when a deadline passes (a server that
trickles a byte a second cannot hold a send), and at once when the run is told to stop while
connecting or before the final "." (nothing can have been accepted then).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from digest.errors import ConfigError, DigestError, SmtpUnavailable
from digest.smtp_url import SmtpConfig

Outcome = Literal["sent", "temporary", "permanent"]
# Replies that mean "slow down" rather than "this recipient is a problem".
THROTTLE_CODES = frozenset({421, 450, 451, 452, 454})
STOP_GRACE_SECONDS = 3.0  # a reply to the final "." may still come this long after a stop


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    code: int
    reply: str
    connection_lost: bool = False
    # About the sender, the message or the relay, not this recipient: stop the run, keep the
    # rest queued (this delivery too: nothing is recorded for it).
    fatal: bool = False
    # Nothing of the message was sent (the run was stopping): the delivery goes back untouched.
    untried: bool = False

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLE_CODES or self.connection_lost


def _reply(code: int, resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    return f"{code} {' '.join(text.split())}"[:500]


def classify(code: int) -> Outcome:
    """The outcome of a reply to the final "." (an unparseable reply, -1, is temporary)."""
    if 200 <= code < 300:
        return "sent"
    if 500 <= code < 600:
        return "permanent"
    return "temporary"


class Sender(Protocol):
    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult: ...

    def close(self) -> None: ...


class _Watchdog:
    """One thread for the process: shuts down the socket of any sender past its deadline, or
    told to stop while it may still be stopped safely."""

    def __init__(self) -> None:
        self.senders: weakref.WeakSet[SmtpSender] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def watch(self, sender: SmtpSender) -> None:
        with self.lock:
            self.senders.add(sender)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="smtp-watchdog", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self.lock:
                senders = list(self.senders)
            for sender in senders:
                sender._check(now)


_WATCHDOG = _Watchdog()


class _Smtp(smtplib.SMTP):
    """smtplib.SMTP that hands its socket to the watchdog before the greeting (and before a
    TLS handshake for smtps://), so connecting is bounded and can be stopped too."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        owner: SmtpSender,
        tls: ssl.SSLContext | None,
        **kw: Any,
    ) -> None:
        self._owner = owner
        self._tls = tls
        super().__init__(host, port, **kw)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, self.source_address)
        self._owner._attach(sock)
        if self._tls is not None:
            return self._tls.wrap_socket(sock, server_hostname=host)
        return sock


class SmtpSender:
    """One SMTP connection, opened on first use and reopened after it drops."""

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
        self._smtp: smtplib.SMTP | None = None
        self._pipelining = False
        self._max_size = 0
        # The watchdog's view: a dup of the socket (shutdown acts on the socket, whatever
        # descriptor), the deadline, and whether a stop may cut the current phase short.
        self._guard = threading.Lock()
        self._sock: socket.socket | None = None
        self._deadline: float | None = None
        self._stoppable_until: float | None = None
        self.timed_out = False
        self.aborted = False

    # The watchdog --------------------------------------------------------------------------

    def _attach(self, sock: socket.socket) -> None:
        with self._guard:
            self._sock = sock.dup()
        _WATCHDOG.watch(self)

    def _arm(self, seconds: float, *, stoppable: bool, grace: float = 0.0) -> None:
        with self._guard:
            now = time.monotonic()
            self._deadline = now + seconds
            self._stoppable_until = now + grace if stoppable else None
            self.timed_out = self.aborted = False

    def _disarm(self) -> None:
        with self._guard:
            self._deadline = None
            self._stoppable_until = None

    def _check(self, now: float) -> None:
        with self._guard:
            if self._sock is None or self._deadline is None:
                return
            late = now >= self._deadline
            stopping = (
                self.stop is not None
                and self.stop.is_set()
                and self._stoppable_until is not None
                and now >= self._stoppable_until
            )
            if late or stopping:
                self.timed_out = late
                self.aborted = True  # what smtplib reads from now on is not a reply
                self._deadline = None
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def _forget_socket(self) -> None:
        with self._guard:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.close()
            self._sock = None
            self._deadline = None

    # Connecting ----------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        return tls_context(self.cfg)

    def connect(self) -> None:
        """Open the connection; raises SmtpUnavailable (temporary) or DigestError (setup)."""
        cfg = self.cfg
        if self.stop is not None and self.stop.is_set():
            raise SmtpUnavailable("not connecting: stopping")
        smtp: smtplib.SMTP | None = None
        self._arm(cfg.transaction_seconds, stoppable=True)
        try:
            smtp = _Smtp(
                cfg.host, cfg.port, owner=self, local_hostname=self.local_hostname,
                timeout=cfg.timeout, tls=self._tls_context() if cfg.security == "tls" else None,
            )  # fmt: skip
            smtp.ehlo_or_helo_if_needed()
            if cfg.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DigestError(
                        f"{cfg.display} does not offer STARTTLS, which smtp+starttls:// requires",
                        hint="Check smtp_url: use the server's submission port, or smtps://.",
                    )
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if cfg.user:
                try:
                    _login(smtp, cfg.user, cfg.password or "")
                except smtplib.SMTPServerDisconnected:
                    if self.timed_out or (self.stop is not None and self.stop.is_set()):
                        raise
                    # Servers often hang up after failed attempts rather than answer 535.
                    raise smtplib.SMTPAuthenticationError(
                        535, b"the server closed the connection during login"
                    ) from None
        except (OSError, smtplib.SMTPException) as exc:
            self._quietly_close(smtp)
            raise self._connect_error(exc) from None
        finally:
            self._disarm()
        self._smtp = smtp
        self._pipelining = bool(smtp.has_extn("pipelining"))
        try:
            self._max_size = int(smtp.esmtp_features.get("size", "0").split()[0] or 0)
        except (ValueError, IndexError):
            self._max_size = 0

    def _connect_error(self, exc: OSError | smtplib.SMTPException) -> DigestError:
        """What a failure to connect or log in means: a setup problem, or try again later."""
        cfg = self.cfg
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DigestError(
                f"the TLS certificate of {cfg.host} could not be verified: {exc.verify_message}",
                hint="For a private CA set smtp_ca_file to its certificate (PEM).",
            )
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            reply = _reply(exc.smtp_code, exc.smtp_error)
            return ConfigError(
                f"{cfg.display} refused the login for user {cfg.user!r}: {reply}",
                hint="Check the user in smtp_url and DIGEST_SMTP_PASSWORD.",
            )
        hint = (
            "Check smtp_url and that the server is running; queued deliveries stay queued and "
            "the next `digest send` resumes them."
        )
        if isinstance(exc, smtplib.SMTPConnectError):
            reason = (
                f"{cfg.display} refused the connection: {_reply(exc.smtp_code, exc.smtp_error)}"
            )
            return SmtpUnavailable(reason, hint="Try again later; nothing was marked as sent.")
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

    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        """Send prepared bytes (CRLF line ends, no line starting with '.') to one recipient."""
        fresh = self._smtp is None
        if fresh:
            self.connect()
        result = self._transaction(envelope_from, recipient, message)
        if result is None and not fresh:
            # The server had closed the idle connection (some answer 250 and hang up): nothing
            # was tried, so try once more on a new connection, at once.
            self.connect()
            result = self._transaction(envelope_from, recipient, message)
        if result is None:
            return SendResult("temporary", 0, "connection lost before MAIL FROM was answered", True)
        return result

    def _transaction(self, envelope_from: str, recipient: str, message: bytes) -> SendResult | None:
        """One transaction; None when the connection was already gone (nothing was tried)."""
        smtp = self._smtp
        assert smtp is not None
        if self._max_size and len(message) > self._max_size:
            return SendResult(
                "permanent", 552,
                f"552 the message is {len(message)} bytes; {self.cfg.display} accepts at most "
                f"{self._max_size} (its SIZE)", fatal=True,
            )  # fmt: skip
        answered = dot_sent = False
        self._arm(self.cfg.transaction_seconds, stoppable=True)
        try:
            if self._pipelining:
                # RFC 2920: MAIL, RCPT and DATA in one write, then their three replies.
                # Addresses were validated (no spaces, brackets or line breaks) when stored.
                smtp.send(
                    f"MAIL FROM:<{envelope_from}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode(
                        "ascii"
                    )
                )
                mail = smtp.getreply()
                answered = True
                rcpt, data = smtp.getreply(), smtp.getreply()
                # A server that opened DATA although MAIL or RCPT was not accepted: a lone "."
                # could deliver an empty message, so the connection is dropped instead (the
                # transaction dies with it).
                abandon = data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251))
                for stage, (code, resp) in (("mail", mail), ("rcpt", rcpt), ("data", data)):
                    if abandon:
                        self._drop()
                    refused = self._judge(stage, code, resp)
                    if refused is not None:
                        return refused
            else:
                code, resp = smtp.mail(envelope_from)
                answered = True
                for stage in ("mail", "rcpt", "data"):
                    if stage == "rcpt":
                        code, resp = smtp.rcpt(recipient)
                    elif stage == "data":
                        smtp.putcmd("data")
                        code, resp = smtp.getreply()
                    refused = self._judge(stage, code, resp)
                    if refused is not None:
                        return refused
            # The message is already in wire form: send it as is, then the lone dot.
            smtp.send(message + b".\r\n")
            dot_sent = True
            # From here the server may have taken it: a stop waits a little for the reply,
            # which may take up to final_reply_seconds (not only smtp_timeout) to come.
            self._arm(self.cfg.final_reply_seconds, stoppable=True, grace=STOP_GRACE_SECONDS)
            if smtp.sock is not None:
                smtp.sock.settimeout(self.cfg.final_reply_seconds)
            try:
                code, resp = smtp.getreply()
            finally:
                if smtp.sock is not None:
                    smtp.sock.settimeout(self.cfg.timeout)
            self._check_aborted()
        except (smtplib.SMTPException, OSError) as exc:  # lost, or a reply line we cannot read
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
        if code == 421 or code < 0:
            self._drop()  # closing, or a reply we cannot parse: the connection is not usable
        if code == 552:
            # RFC 5321: at the end of DATA, 552 is about the message (its size), not the recipient
            return SendResult("permanent", code, _reply(code, resp), fatal=True)
        return SendResult(classify(code), code, _reply(code, resp), connection_lost=code < 0)

    def _check_aborted(self) -> None:
        """The watchdog cut the connection: a partial line smtplib read is no reply."""
        if self.aborted:
            raise smtplib.SMTPServerDisconnected("the connection was cut")

    def _judge(self, stage: str, code: int, resp: bytes) -> SendResult | None:
        """The result when `code` ends the transaction at `stage`; None when it goes on."""
        self._check_aborted()
        expected = {"mail": (250,), "rcpt": (250, 251), "data": (354,)}[stage]
        if code in expected:
            return None
        reply = _reply(code, resp)
        if 400 <= code < 500 or (stage == "rcpt" and code == 552):
            result = SendResult("temporary", code, reply, connection_lost=code == 421)
        elif 500 <= code < 600 and stage == "rcpt":
            result = SendResult("permanent", code, reply)
        elif 500 <= code < 600:
            # refused at MAIL FROM (553 sender rejected, 530 authentication required, 554 relay
            # denied) or at DATA with the recipient accepted: about the sender, not the recipient
            result = SendResult("permanent", code, f"{reply} (at {stage.upper()})", fatal=True)
        else:
            # a 2xx or 3xx where another reply was due, or a line we cannot parse (-1)
            self._drop()
            return SendResult(
                "temporary", code, f"protocol error at {stage.upper()}: {reply}", True
            )
        if code == 421 or self._smtp is None:
            self._drop()
        else:
            try:
                self._arm(self.cfg.timeout, stoppable=True)
                self._smtp.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
            finally:
                self._disarm()
        return result

    def _quietly_close(self, smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()
        self._forget_socket()

    def _drop(self) -> None:
        self._quietly_close(self._smtp)
        self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            self._arm(min(self.cfg.timeout, 5.0), stoppable=False)
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._disarm()
            self._drop()


def tls_context(cfg: SmtpConfig) -> ssl.SSLContext:
    """Certificates verified against the system's CAs, or smtp_ca_file (`digest check --smtp`
    uses the same)."""
    try:
        return ssl.create_default_context(cafile=cfg.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"smtp_ca_file {cfg.ca_file}: {exc}") from None


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """One AUTH attempt (PLAIN, else LOGIN, else smtplib's choice).

    smtplib.login() tries every mechanism in turn after a failure, which some servers answer
    by hanging up or stalling; one clear 535 is better.
    """
    mechanisms = smtp.esmtp_features.get("auth", "").upper().split()
    smtp.user, smtp.password = user, password
    for mech in ("PLAIN", "LOGIN"):
        if mech in mechanisms:
            smtp.auth(mech, getattr(smtp, f"auth_{mech.lower()}"))
            return
    smtp.login(user, password)


class FileSender:
    """Writes each message to a folder as an .eml file instead of sending it (dry runs)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)

    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        self.count += 1
        safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in recipient)
        (self.folder / f"{self.count:06d}-{safe}.eml").write_bytes(message)
        return SendResult("sent", 250, "250 written to file")

    def close(self) -> None:
        pass
