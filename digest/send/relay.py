"""`digest check --smtp`: talk to the relay as a send would, step by step, and send nothing.

Connect and read the greeting; TLS (STARTTLS or implicit) with the same certificate checks as
a send (send/mailer.py `tls_context`); the EHLO extensions that matter (SIZE, PIPELINING,
STARTTLS, AUTH); the login; then `MAIL FROM` with the envelope sender of a real send, undone
with `RSET` (no RCPT, no DATA: nothing can be delivered). Each step gives one line; the first
failure ends the check with what to do.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.utils import parseaddr

from digest.config import Settings
from digest.send.smtp_wire import tls_context


@dataclass(frozen=True)
class Step:
    status: str  # ok | warning | error
    name: str
    detail: str


@dataclass
class RelayReport:
    relay: str
    steps: list[Step] = field(default_factory=list)
    hint: str = ""
    settings_wrong: bool = False  # the relay refused the login: fix the settings (exit 3)

    @property
    def ok(self) -> bool:
        return not any(s.status == "error" for s in self.steps)

    def add(self, status: str, name: str, detail: str) -> None:
        self.steps.append(Step(status, name, detail))


def _reply(code: int, resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    return f"{code} {' '.join(text.split())}"[:200]


class _Failed(Exception):
    def __init__(self, name: str, detail: str, hint: str, *, settings_wrong: bool = False) -> None:
        super().__init__(detail)
        self.name, self.detail, self.hint = name, detail, hint
        self.settings_wrong = settings_wrong


def check_relay(settings: Settings) -> RelayReport:
    """Every step of a send up to MAIL FROM against the configured relay; nothing is sent."""
    cfg = settings.smtp
    report = RelayReport(cfg.display)
    smtp: smtplib.SMTP | None = None
    try:
        smtp = _connect(settings, report)
        _extensions(smtp, report, settings)
        _probe(smtp, report, settings)
    except _Failed as failed:
        report.add("error", failed.name, failed.detail)
        report.hint, report.settings_wrong = failed.hint, failed.settings_wrong
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    return report


def _connect(settings: Settings, report: RelayReport) -> smtplib.SMTP:
    cfg = settings.smtp
    context = tls_context(cfg) if cfg.security != "plain" else None
    where = f"{cfg.host}:{cfg.port}"
    try:
        if cfg.security == "tls":
            assert context is not None
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                                  context=context)  # fmt: skip
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
    except ssl.SSLCertVerificationError as exc:
        raise _tls_failed(cfg.host, exc) from None
    except (OSError, smtplib.SMTPException) as exc:
        why = "cannot resolve the host" if isinstance(exc, socket.gaierror) else _why(exc)
        raise _Failed("connect", f"cannot connect to {where}: {why}",
                      "Check smtp_url (host and port) and that the relay lets this machine in.") from None  # fmt: skip
    report.add("ok", "connect", f"connected to {where}")
    try:
        smtp.ehlo()
        if cfg.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise _Failed("tls", f"{cfg.display} does not offer STARTTLS",
                              "Use the relay's submission port (587), or smtps:// (465).")  # fmt: skip
            assert context is not None
            smtp.starttls(context=context)
            smtp.ehlo()
    except ssl.SSLCertVerificationError as exc:
        raise _tls_failed(cfg.host, exc) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise _Failed("tls", f"the TLS handshake with {cfg.host} failed: {_why(exc)}",
                      "Check smtp_url's scheme: smtp+starttls:// (587) or smtps:// (465).") from None  # fmt: skip
    if cfg.security == "plain":
        report.add("warning", "tls", "none: smtp:// sends in the clear (fine on this machine "
                   "or a trusted network; use smtp+starttls:// or smtps:// otherwise)")  # fmt: skip
    else:
        sock = smtp.sock
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else "TLS"
        report.add("ok", "tls", f"{version}, the certificate of {cfg.host} verified")
    return smtp


def _tls_failed(host: str, exc: ssl.SSLCertVerificationError) -> _Failed:
    return _Failed(
        "tls", f"the TLS certificate of {host} could not be verified: {exc.verify_message}",
        "For a relay with a private certificate authority set smtp_ca_file to its "
        "certificate (PEM); otherwise ask the relay's administrator for a valid certificate.",
    )  # fmt: skip


def _why(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _extensions(smtp: smtplib.SMTP, report: RelayReport, settings: Settings) -> None:
    cfg = settings.smtp
    feats = smtp.esmtp_features
    size = feats.get("size", "").split()
    said = [f"SIZE {int(size[0]) // 1_000_000} MB" if size and size[0].isdigit() and int(size[0])
            else "SIZE (no limit given)" if "size" in feats else "no SIZE (no size limit stated)"]  # fmt: skip
    said.append(
        "PIPELINING"
        if "pipelining" in feats
        else "no PIPELINING (each command waits for its reply)"
    )
    if cfg.security == "starttls":
        said.append("STARTTLS")
    auth = feats.get("auth", "").split()
    said.append(f"AUTH {' '.join(auth)}" if auth else "no AUTH")
    report.add("ok", "ehlo", ", ".join(said))
    if not cfg.user:
        report.add("ok", "login", "none: smtp_url names no user (the relay must trust this host)")
        return
    if not auth:
        raise _Failed("login", f"{cfg.display} offers no AUTH, but smtp_url names user {cfg.user!r}",
                      "Use the relay's submission port, or remove the user from smtp_url.")  # fmt: skip
    try:
        _login(smtp, cfg.user, cfg.password or "")
    except smtplib.SMTPAuthenticationError as exc:
        raise _Failed("login", f"{cfg.display} refused the login for user {cfg.user!r}: "
                      f"{_reply(exc.smtp_code, exc.smtp_error)}",
                      "Check the user in smtp_url and DIGEST_SMTP_PASSWORD (or smtp_password_file).",
                      settings_wrong=True) from None  # fmt: skip
    except (OSError, smtplib.SMTPException) as exc:
        raise _Failed("login", f"the login failed: {_why(exc)}",
                      "Check the user in smtp_url and the password.") from None  # fmt: skip
    report.add("ok", "login", f"logged in as {cfg.user!r}")


def _probe(smtp: smtplib.SMTP, report: RelayReport, settings: Settings) -> None:
    """MAIL FROM as a send gives it (the bounce address's domain when VERP is on), then RSET."""
    sender = parseaddr(settings.bounce_address or settings.from_address)[1]
    try:
        code, resp = smtp.mail(sender)
        if code != 250:
            raise _Failed("mail-from", f"MAIL FROM:<{sender}> refused: {_reply(code, resp)}",
                          "The relay does not let this login send as this address: check from "
                          "(and bounce_address) with the relay's administrator.")  # fmt: skip
        smtp.rset()
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise _Failed("mail-from", f"the connection was lost at MAIL FROM: {_why(exc)}",
                      "Run the check again; if it persists, ask the relay's administrator.") from None  # fmt: skip
    report.add(
        "ok", "mail-from", f"MAIL FROM:<{sender}> accepted ({_reply(code, resp)}), then RSET"
    )


def format_relay_report(report: RelayReport) -> str:
    lines = [f"Relay: {report.relay}", ""]
    lines += [f"  {s.status:<8} {s.name:<10} {s.detail}" for s in report.steps]
    lines.append("")
    lines.append("The relay is ready: a send would get this far." if report.ok
                 else "The relay check failed; nothing was sent.")  # fmt: skip
    return "\n".join(lines)


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
