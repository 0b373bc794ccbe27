"""SMTP delivery of prepared message bytes, with every reply classified (RFC 5321, RFC 3463).

2xx: sent. 4xx or a dropped connection: temporary, try again later. 5xx: permanent.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from digest.config import SmtpConfig
from digest.errors import ConfigError, DigestError, SmtpUnavailable

Outcome = Literal["sent", "temporary", "permanent"]
# Replies that mean "slow down" rather than "this recipient is a problem".
THROTTLE_CODES = frozenset({421, 450, 451, 452, 454})


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    code: int
    reply: str
    connection_lost: bool = False

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLE_CODES or self.connection_lost


def _reply(code: int, resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    return f"{code} {' '.join(text.split())}"[:500]


def classify(code: int) -> Outcome:
    if 200 <= code < 300:
        return "sent"
    if 400 <= code < 500:
        return "temporary"
    return "permanent"


class Sender(Protocol):
    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult: ...

    def close(self) -> None: ...


class SmtpSender:
    """One SMTP connection, opened on first use and reopened after it drops."""

    def __init__(self, cfg: SmtpConfig, local_hostname: str | None = None) -> None:
        self.cfg = cfg
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None
        self._pipelining = False

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.cfg.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"smtp_ca_file {self.cfg.ca_file}: {exc}") from None

    def connect(self) -> None:
        """Open the connection; raises SmtpUnavailable (temporary) or DigestError (setup)."""
        cfg = self.cfg
        smtp: smtplib.SMTP | None = None
        try:
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, local_hostname=self.local_hostname,
                    timeout=cfg.timeout, context=self._tls_context(),
                )  # fmt: skip
            else:
                smtp = smtplib.SMTP(
                    cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=cfg.timeout
                )
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
                    # Servers often hang up after failed attempts rather than answer 535.
                    raise smtplib.SMTPAuthenticationError(
                        535, b"the server closed the connection during login"
                    ) from None
        except ssl.SSLCertVerificationError as exc:
            _quietly_close(smtp)
            raise DigestError(
                f"the TLS certificate of {cfg.host} could not be verified: {exc.verify_message}",
                hint="For a private CA set smtp_ca_file to its certificate (PEM).",
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            _quietly_close(smtp)
            raise ConfigError(
                f"{cfg.display} refused the login for user {cfg.user!r}: {_reply(exc.smtp_code, exc.smtp_error)}",
                hint="Check the user in smtp_url and DIGEST_SMTP_PASSWORD.",
            ) from None
        except smtplib.SMTPConnectError as exc:
            _quietly_close(smtp)
            raise SmtpUnavailable(
                f"{cfg.display} refused the connection: {_reply(exc.smtp_code, exc.smtp_error)}",
                hint="Try again later; nothing was marked as sent.",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quietly_close(smtp)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, socket.gaierror):
                reason = f"cannot resolve {cfg.host}"
            raise SmtpUnavailable(
                f"cannot connect to {cfg.display}: {reason or type(exc).__name__}",
                hint="Check smtp_url and that the server is running; queued deliveries stay "
                "queued and the next `digest send` resumes them.",
            ) from None
        self._smtp = smtp
        self._pipelining = bool(smtp.has_extn("pipelining"))

    def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        """Send prepared bytes (CRLF line ends, no line starting with '.') to one recipient."""
        if self._smtp is None:
            self.connect()
        smtp = self._smtp
        assert smtp is not None
        try:
            if self._pipelining:
                # RFC 2920: MAIL, RCPT and DATA in one write, then their three replies.
                # Addresses were validated (no spaces, brackets or line breaks) when stored.
                smtp.send(
                    f"MAIL FROM:<{envelope_from}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode(
                        "ascii"
                    )
                )
                mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
                if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
                    smtp.send(b".\r\n")  # a server that opened DATA anyway: send nothing
                    smtp.getreply()
                for (code, resp), ok in ((mail, (250,)), (rcpt, (250, 251)), (data, (354,))):
                    if code not in ok:
                        return self._refused(code, resp)
            else:
                code, resp = smtp.mail(envelope_from)
                if code != 250:
                    return self._refused(code, resp)
                code, resp = smtp.rcpt(recipient)
                if code not in (250, 251):
                    return self._refused(code, resp)
                smtp.putcmd("data")
                code, resp = smtp.getreply()
                if code != 354:
                    return self._refused(code, resp)
            # The message is already in wire form: send it as is, then the lone dot.
            smtp.send(message + b".\r\n")
            code, resp = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # Lost before a final reply: unknown whether it was taken; try again later with the
            # same Message-ID so a receiver can tell a duplicate.
            self._drop()
            return SendResult(
                "temporary", 0, f"connection lost: {exc or type(exc).__name__}"[:500], True
            )
        if code == 421:
            self._drop()
        return SendResult(classify(code), code, _reply(code, resp))

    def _refused(self, code: int, resp: bytes) -> SendResult:
        if code == 421:  # the server is closing the connection
            self._drop()
        else:
            try:
                self._smtp.rset()  # type: ignore[union-attr]
            except (smtplib.SMTPException, OSError):
                self._drop()
        return SendResult(classify(code), code, _reply(code, resp), connection_lost=code == 421)

    def _drop(self) -> None:
        _quietly_close(self._smtp)
        self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._drop()


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


def _quietly_close(smtp: smtplib.SMTP | None) -> None:
    if smtp is None:
        return
    with contextlib.suppress(OSError):
        smtp.close()


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
