"""What one message from the bounce mailbox is: a bounce (DSN), a complaint (ARF), an
emailed unsubscribe, an auto-reply, or mail for a person. Pure: no database, no network.

- Bounces: `multipart/report; report-type=delivery-status` (RFC 3464) read field by field, and
  every other shape through flufl.bounce (GNU Mailman's detectors: Exim, qmail, Exchange, …).
  `Action: failed` with a 5.x.x status is permanent; 4.x.x or `Action: delayed` temporary.
- Complaints: `multipart/report; report-type=feedback-report` (ARF, RFC 5965), and Microsoft's
  older JMRP shape (the original attached, `X-HmXmrOriginalRecipient`).
- Auto-replies (RFC 3834 `Auto-Submitted` other than `no`, `X-Autoreply`, `X-Autorespond`,
  `Precedence: auto_reply`, out-of-office subjects) are never bounces (listmonk #1334).
- Emailed unsubscribes: a valid unsubscribe token (verp.UNSUBSCRIBE) in the subject or address.

Which delivery a report is about comes from the signed tokens (verp.py) first, then the
Message-ID of the original message, and only then from the addresses the report names.
Hostile input (binary junk, truncated MIME, a detector that trips) gives `person`, never an
exception.
"""

from __future__ import annotations

import email
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Any

from digest.inbound import verp
from digest.models import InboundKind
from digest.tokens import Keyring, read_token

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # a report is small; a bigger message is for a person

# Our Message-ID: <digest.{issue uid}.{subscriber uid}@domain> (compose/recipients.py).
_OUR_MESSAGE_ID = re.compile(r"<?digest\.([0-9a-f]{16})\.([0-9a-f]{32})@[^>\s]+>?", re.I)
_WEB_TOKEN = re.compile(r"/unsubscribe/([0-9a-f]{32}\.[A-Za-z0-9_-]{10,40})")
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ENHANCED_FAIL = re.compile(r"\b([45])\.(\d{1,3})\.(\d{1,3})\b")
# an SMTP reply code as MTAs quote it: "550 5.1.1 …", "550-5.7.1", "552 Message …"
_SMTP_CODE = re.compile(r"\b([45][0-5]\d)[ -](?=\d\.\d|[A-Za-z<#(])")
_RECIPIENT_HEADERS = (
    "to", "cc", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to",
    "x-delivered-to", "x-rcpt-to", "original-recipient",
)  # fmt: skip
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|autoreply|out of (the )?office|"
    r"on vacation|away from (the )?office|abwesenheit|r[ée]ponse automatique|"
    r"absence|fuera de la oficina|risposta automatica|afwezig)",
    re.IGNORECASE,
)
_COMPLAINT_TYPES = frozenset({"abuse", "fraud", ""})  # RFC 5965 §7.3; missing: treat as abuse


@dataclass(frozen=True)
class Failure:
    """One failed recipient reported by a DSN."""

    address: str
    permanent: bool
    status: str = ""  # enhanced status code (RFC 3463), e.g. 5.1.1
    diagnostic: str = ""


@dataclass(frozen=True)
class Classified:
    kind: InboundKind
    fingerprint: str
    message_id: str = ""
    subject: str = ""
    reason: str = ""  # one line: what it is, for --verbose and the log
    # Which delivery/subscriber it is about, strongest evidence first.
    refs: tuple[verp.DeliveryRef, ...] = ()  # from valid tokens
    subscriber_uids: tuple[str, ...] = ()  # from a web unsubscribe token in the original
    original_ids: tuple[tuple[str, str], ...] = ()  # (issue uid, subscriber uid) Message-IDs
    addresses: tuple[str, ...] = ()  # addresses the report names (weakest: forgeable)
    # Bounces
    permanent: bool = False
    failures: tuple[Failure, ...] = ()
    status: str = ""
    diagnostic: str = ""
    # Complaints
    feedback_type: str = ""
    bad_token: bool = False  # a token-shaped string whose signature is wrong: forged or mangled


def fingerprint(raw: bytes, message_id: str) -> str:
    """sha256 of the Message-ID and the body: the same message through two routes (a pipe and
    IMAP add different trace headers) has one fingerprint; line ends do not matter."""
    data = raw.replace(b"\r\n", b"\n")
    _, sep, body = data.partition(b"\n\n")
    if not sep:
        body = data  # no header block at all (junk): the whole of it
    h = hashlib.sha256()
    h.update(message_id.strip().encode("utf-8", "replace") + b"\n")
    h.update(body.rstrip(b"\n"))
    return h.hexdigest()


def _text(value: object) -> str:
    """A header as one line of text, RFC 2047 words decoded; never raises."""
    if value is None:
        return ""
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:  # malformed encoded-words, unknown charsets
        text = str(value)
    return " ".join(text.split())


def _parts(msg: Message) -> Iterator[Message]:
    try:
        yield from msg.walk()
    except Exception:  # a broken MIME tree: what was walked so far
        return


def _payload_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return ""
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):
        return [email.message_from_string(b) for b in re.split(r"\r?\n\s*\r?\n", payload) if b]
    return []


def _originals(msg: Message) -> list[Message]:
    """The original message(s) a report carries: message/rfc822 or text/rfc822-headers."""
    found = []
    for part in _parts(msg):
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and part is not msg:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found.append(payload[0])
        elif ctype in ("text/rfc822-headers", "text/rfc822-header"):
            found.append(email.message_from_string(_payload_text(part)))
    return found


def _addr_of(value: str) -> str:
    """The address in `rfc822; user@example.org` or `<user@example.org>`."""
    _, _, rest = value.partition(";")
    addr = parseaddr(rest or value)[1]
    return addr if "@" in addr else ""


class _Evidence:
    def __init__(self, key: Keyring | bytes) -> None:
        self.key = key
        self.refs: list[verp.DeliveryRef] = []
        self.uids: list[str] = []
        self.ids: list[tuple[str, str]] = []
        self.bad = False

    def tokens(self, text: str, purpose: str, other: str | None = None) -> None:
        """Valid tokens for `purpose`; one valid for neither it nor `other` is a bad token."""
        for token in verp.tokens_in_text(text):
            ref = verp.read_delivery_token(self.key, purpose, token)
            if ref is None:
                if other is None or verp.read_delivery_token(self.key, other, token) is None:
                    self.bad = True
            elif ref not in self.refs:
                self.refs.append(ref)

    def original(self, orig: Message) -> None:
        """Tokens and Message-ID in the headers of the original message of a report."""
        self.tokens(_text(orig.get("return-path")), verp.BOUNCE)
        unsub = _text(orig.get("list-unsubscribe"))
        self.tokens(unsub, verp.UNSUBSCRIBE)
        for web in _WEB_TOKEN.findall(unsub):
            uid = read_token(self.key, "unsubscribe", web)
            if uid is None:
                self.bad = True
            elif uid not in self.uids:
                self.uids.append(uid)
        match = _OUR_MESSAGE_ID.search(_text(orig.get("message-id")))
        if match and (ids := (match.group(1).lower(), match.group(2).lower())) not in self.ids:
            self.ids.append(ids)


def _dsn_failures(msg: Message) -> tuple[bool, list[Failure], int]:
    """(is a delivery-status report, its failed recipients, recipients reported delivered)."""
    is_report = False
    failures: list[Failure] = []
    delivered = 0
    for part in _parts(msg):
        if part.get_content_type() != "message/delivery-status":
            continue
        is_report = True
        for block in _field_blocks(part)[1:] or _field_blocks(part):
            action = (_text(block.get("action")).lower().split() or [""])[0]
            addr = _addr_of(_text(block.get("final-recipient"))) or _addr_of(
                _text(block.get("original-recipient"))
            )
            if not action and not addr:
                continue  # the per-message block
            status = ""
            if m := _ENHANCED.search(_text(block.get("status"))):
                status = ".".join(m.groups())
            diagnostic = _text(block.get("diagnostic-code")).partition(";")[2].strip() or _text(
                block.get("diagnostic-code")
            )
            if action in ("delivered", "relayed", "expanded"):
                delivered += 1
                continue
            # failed (or a non-standard word such as "error"): permanent unless the status is
            # 4.x.x; delayed: temporary (RFC 3464 §2.3.3)
            permanent = action != "delayed" and not status.startswith("4")
            if action != "delayed" and not status:
                code = _SMTP_CODE.search(diagnostic + " ")
                permanent = not (code and code.group(1).startswith("4"))
            failures.append(Failure(addr, permanent, status, diagnostic[:500]))
    return is_report, failures, delivered


def _flufl_failures(msg: Message) -> list[Failure]:
    """Failed recipients by GNU Mailman's detectors (non-standard bounces too)."""
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping on hostile input must not stop the run
        return []

    def addr(b: bytes | str) -> str:
        return (b.decode("utf-8", "replace") if isinstance(b, bytes) else b).strip("<>")

    out = [Failure(addr(a), True) for a in sorted(permanent)]
    out += [Failure(addr(a), False) for a in sorted(temporary) if a not in permanent]
    return out


def _status_in_text(msg: Message) -> tuple[str, str]:
    """An enhanced status code and the line it is on, from the text of a non-standard bounce."""
    for part in _parts(msg):
        if part.get_content_maintype() == "text":
            for line in _payload_text(part).splitlines():
                if m := _ENHANCED_FAIL.search(line):
                    return ".".join(m.groups()), " ".join(line.split())[:500]
                if m := _SMTP_CODE.search(line + " "):
                    return m.group(1), " ".join(line.split())[:500]
    return "", ""


def _auto_reply_header(msg: Message) -> str:
    """The RFC 3834 (or common) header that marks `msg` as sent by a program, or ''."""
    auto = _text(msg.get("auto-submitted")).lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto}"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder"):
        if msg.get(name) is not None:
            return name.title()
    if _text(msg.get("precedence")).lower() == "auto_reply":
        return "Precedence: auto_reply"
    return ""


def classify(raw: bytes, *, key: Keyring | bytes, recipient: str | None = None) -> Classified:
    """What `raw` is. `recipient` is the envelope recipient when the MTA gave it (a pipe)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        fp = hashlib.sha256(raw).hexdigest()
        size = len(raw) // (1024 * 1024)
        return Classified(
            InboundKind.person, fp, reason=f"{size} MB: too large to be a report; left alone"
        )
    try:
        return _classify(raw, key=key, recipient=recipient)
    except Exception as exc:  # hostile input: the message stays for a person
        return Classified(
            InboundKind.person,
            hashlib.sha256(raw).hexdigest(),
            reason=f"could not be read as an email ({type(exc).__name__}); left alone",
        )


def _classify(raw: bytes, *, key: Keyring | bytes, recipient: str | None) -> Classified:
    msg = email.message_from_bytes(raw)
    message_id = _text(msg.get("message-id"))[:500]
    fp = fingerprint(raw, message_id)
    subject = _text(msg.get("subject"))[:500]

    def made(kind: InboundKind, **kw: Any) -> Classified:
        return Classified(kind, fp, message_id=message_id, subject=subject, **kw)

    if not msg.keys():
        return made(InboundKind.person, reason="no email headers; left alone")

    evidence = _Evidence(key)
    rcpt_text = " ".join(
        [recipient or ""] + [_text(v) for h in _RECIPIENT_HEADERS for v in msg.get_all(h, [])]
    )
    originals = _originals(msg)
    ctype = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "") or "").lower()
    part_types = {p.get_content_type() for p in _parts(msg)}

    # Complaints (ARF, RFC 5965; and Microsoft JMRP's older shape)
    jmrp = next(
        (o for o in [msg, *originals] if o.get("x-hmxmroriginalrecipient") is not None), None
    )
    if report_type == "feedback-report" or "message/feedback-report" in part_types or jmrp:
        fields: dict[str, str] = {}
        for part in _parts(msg):
            if part.get_content_type() == "message/feedback-report":
                for block in _field_blocks(part):
                    for name, value in block.items():
                        fields.setdefault(name.lower(), _text(value))
        feedback_type = fields.get("feedback-type", "abuse" if jmrp else "").lower()
        addresses = [_addr_of(fields.get("original-rcpt-to", ""))]
        if jmrp is not None:
            addresses.append(_addr_of(_text(jmrp.get("x-hmxmroriginalrecipient"))))
        for orig in originals:
            evidence.original(orig)
            addresses += [a for _, a in getaddresses([_text(v) for v in orig.get_all("to", [])])]
        who = fields.get("user-agent") or _text(msg.get("from"))
        if feedback_type not in _COMPLAINT_TYPES:
            return made(InboundKind.person, feedback_type=feedback_type,
                reason=f"a feedback report of type {feedback_type!r} (not a complaint); left alone",
            )  # fmt: skip
        return made(InboundKind.complaint, refs=tuple(evidence.refs), subscriber_uids=tuple(evidence.uids),
            original_ids=tuple(evidence.ids), addresses=_unique(addresses),
            feedback_type=feedback_type or "abuse", bad_token=evidence.bad,
            reason=f"complaint ({feedback_type or 'abuse'}) from {who}"[:500],
        )  # fmt: skip

    # Bounces (DSN, RFC 3464), then the non-standard shapes flufl.bounce knows
    is_report, failures, delivered = _dsn_failures(msg)
    is_report = is_report or (ctype == "multipart/report" and report_type == "delivery-status")
    auto = _auto_reply_header(msg)
    flufl = _flufl_failures(msg) if is_report or not auto else []
    seen = {f.address.lower() for f in failures}
    failures += [f for f in flufl if f.address.lower() not in seen]
    if failures:
        evidence.tokens(rcpt_text, verp.BOUNCE)
        for orig in originals:
            evidence.original(orig)
        permanent = any(f.permanent for f in failures)
        main = next((f for f in failures if f.permanent == permanent and f.status), None)
        status, diagnostic = (main.status, main.diagnostic) if main else ("", "")
        if not status:
            status, diagnostic = _status_in_text(msg)
        diagnostic = diagnostic or next((f.diagnostic for f in failures if f.diagnostic), "")
        return made(InboundKind.bounce, refs=tuple(evidence.refs), subscriber_uids=tuple(evidence.uids),
            original_ids=tuple(evidence.ids),
            addresses=_unique([f.address for f in failures]),
            permanent=permanent, failures=tuple(failures), status=status,
            diagnostic=diagnostic[:500], bad_token=evidence.bad,
            reason=(f"{'permanent' if permanent else 'temporary'} bounce "
                    f"{status} {diagnostic}").strip()[:500],
        )  # fmt: skip
    if is_report:
        what = "reports a delivery" if delivered else "reports no failure"
        return made(InboundKind.auto_reply, reason=f"a delivery notice that {what}")

    # Emailed unsubscribes: the token of List-Unsubscribe's mailto: (subject or address)
    unsub = _Evidence(key)
    unsub.tokens(subject + " " + rcpt_text, verp.UNSUBSCRIBE, other=verp.BOUNCE)
    if unsub.refs:
        return made(InboundKind.unsubscribe, refs=tuple(unsub.refs),
            reason=f"emailed unsubscribe from {_text(msg.get('from'))}"[:500],
        )  # fmt: skip

    if auto:
        return made(InboundKind.auto_reply, reason=f"auto-reply ({auto})")
    if _AUTO_SUBJECT.search(subject):
        return made(InboundKind.auto_reply, reason=f"auto-reply (subject {subject!r})"[:500])
    if unsub.bad:
        return made(InboundKind.person, bad_token=True,
            reason="an unsubscribe token that is not valid (forged or mangled); left alone",
        )  # fmt: skip
    return made(InboundKind.person, reason="not a report; left for a person")


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v and "@" in v))
