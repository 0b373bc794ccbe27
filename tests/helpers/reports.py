"""Reports as other systems send them, with our tokens and Message-IDs inside: Gmail and
Microsoft 365 DSNs, ARF complaints (RFC 5965, Yahoo, Microsoft JMRP), vacation replies, a human
reply, an emailed unsubscribe; and a test database with an issue and its deliveries."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.inbound import verp
from digest.models import Delivery, DeliveryStatus, Issue, Subscriber, SubscriberStatus

from .newsletter import SECRET

KEY = SECRET.encode()
DOMAIN = "partnership.example.org"
BOUNCE_ADDRESS = f"bounces@{DOMAIN}"
SAMPLES = Path(__file__).parent.parent / "samples" / "inbound"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


@dataclass(frozen=True)
class Sent:
    """One delivery of ours, as the report about it will quote it."""

    issue_number: int
    issue_uid: str
    subscriber_uid: str
    email: str

    @property
    def verp_token(self) -> str:
        return verp.make_delivery_token(KEY, verp.BOUNCE, self.issue_number, self.subscriber_uid)

    @property
    def unsubscribe_token(self) -> str:
        return verp.make_delivery_token(
            KEY, verp.UNSUBSCRIBE, self.issue_number, self.subscriber_uid
        )

    @property
    def return_path(self) -> str:
        return verp.verp_address(BOUNCE_ADDRESS, self.verp_token)

    @property
    def message_id(self) -> str:
        return f"<digest.{self.issue_uid}.{self.subscriber_uid}@{DOMAIN}>"

    def original_headers(self, *, return_path: bool = True, to: bool = True) -> str:
        lines = []
        if return_path:
            lines.append(f"Return-Path: <{self.return_path}>")
        lines += [
            "From: Safeguarding News <news@partnership.example.org>",
            f"To: {self.email}" if to else "To: redacted@yahoo.com",
            "Subject: Safeguarding News: 24 Nov - 30 Nov 2026",
            "Date: Mon, 30 Nov 2026 09:00:00 +0000",
            f"Message-ID: {self.message_id}",
            "List-Id: Safeguarding News <safeguarding-news.partnership.example.org>",
            f"List-Unsubscribe: <mailto:bounces@{DOMAIN}?subject=unsubscribe%20"
            f"{self.unsubscribe_token}>",
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="utf-8"',
        ]
        return "\r\n".join(lines) + "\r\n"


def make_world(engine: Engine, emails: list[str], *, issue_number: int = 1) -> list[Sent]:
    """Active subscribers, one sent issue and a `sent` delivery for each of them."""
    now = datetime.now(UTC)
    with Session(engine) as s:
        issue = Issue(
            number=issue_number, uid=secrets.token_hex(8), status="sent", subject="Issue",
            period_start=now - timedelta(days=7), period_end=now, html="<p>x</p>", text="x",
        )  # fmt: skip
        s.add(issue)
        s.flush()
        out = []
        for email in emails:
            sub = Subscriber(
                uid=secrets.token_hex(16), email=email, email_key=email.casefold(),
                status=SubscriberStatus.active,
            )  # fmt: skip
            s.add(sub)
            s.flush()
            s.add(
                Delivery(
                    issue_id=issue.id,
                    subscriber_id=sub.id,
                    status=DeliveryStatus.sent,
                    attempts=1,
                    last_reply="250 2.0.0 OK",
                    updated_at=now,
                    sent_at=now,
                )  # fmt: skip
            )
            out.append(Sent(issue_number, issue.uid, sub.uid, email))
        s.commit()
    return out


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def gmail_dsn(sent: Sent, *, to: str | None = None) -> bytes:
    """Gmail's 'Delivery Status Notification (Failure)': multipart/report, 550 5.1.1."""
    to = to or sent.return_path
    return _crlf(f"""\
Delivered-To: {to}
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {to}
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
Message-ID: <{secrets.token_hex(8)}.mx.google.com>
Date: Mon, 30 Nov 2026 01:00:14 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000b1e3"; report-type=delivery-status

--000000000000b1e3
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {sent.email} because the address couldn't be found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist. https://support.google.com/mail/?p=NoSuchUser

--000000000000b1e3
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; mail.partnership.example.org
Arrival-Date: Mon, 30 Nov 2026 01:00:13 -0800 (PST)
X-Original-Message-ID: {sent.message_id}

Final-Recipient: rfc822; {sent.email}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.
 Please try double-checking the recipient's email address for typos or unnecessary spaces.
Last-Attempt-Date: Mon, 30 Nov 2026 01:00:14 -0800 (PST)

--000000000000b1e3
Content-Type: message/rfc822

{sent.original_headers()}
Hello.

--000000000000b1e3--
""")


def office365_dsn(sent: Sent, *, status: str = "5.1.10", action: str = "failed") -> bytes:
    """Microsoft 365 (Exchange Online) 'Undeliverable:': multipart/report with a
    text/rfc822-headers part, the recipient not found (5.1.10) or a mailbox full (4.2.2)."""
    return _crlf(f"""\
Received: from AM6PR01MB1234.eurprd01.prod.exchangelabs.com (2603:10a6::1) by
 mail.partnership.example.org with HTTPS; Mon, 30 Nov 2026 09:01:02 +0000
From: Microsoft Outlook <postmaster@contoso.onmicrosoft.com>
To: <{sent.return_path}>
Date: Mon, 30 Nov 2026 09:01:02 +0000
Content-Type: multipart/report; report-type=delivery-status;
	boundary="a1b2c3d4-e5f6-4711-8f00-0123456789ab"
MIME-Version: 1.0
Message-ID: <{secrets.token_hex(8)}@AM6PR01MB1234.eurprd01.prod.exchangelabs.com>
Subject: Undeliverable: Safeguarding News: 24 Nov - 30 Nov 2026
Auto-Submitted: auto-replied
X-MS-Exchange-Message-Is-Ndr:

--a1b2c3d4-e5f6-4711-8f00-0123456789ab
Content-Type: text/plain; charset="us-ascii"

Your message to {sent.email} couldn't be delivered.
{sent.email.split("@")[0]} wasn't found at {sent.email.split("@")[1]}.

Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'

--a1b2c3d4-e5f6-4711-8f00-0123456789ab
Content-Type: message/delivery-status

Reporting-MTA: dns;AM6PR01MB1234.eurprd01.prod.exchangelabs.com
Received-From-MTA: dns;mail.partnership.example.org
Arrival-Date: Mon, 30 Nov 2026 09:01:01 +0000

Final-Recipient: rfc822;{sent.email}
Action: {action}
Status: {status}
Diagnostic-Code: smtp;550 {status} RESOLVER.ADR.RecipientNotFound; Recipient not found by
 SMTP address lookup

--a1b2c3d4-e5f6-4711-8f00-0123456789ab
Content-Type: text/rfc822-headers

{sent.original_headers()}
--a1b2c3d4-e5f6-4711-8f00-0123456789ab--
""")


def arf_report(sent: Sent, *, feedback_type: str = "abuse", to: str = BOUNCE_ADDRESS) -> bytes:
    """An RFC 5965 feedback report (§B.2's shape), the original message attached in full."""
    return _crlf(f"""\
From: <abusedesk@example.net>
Date: Mon, 30 Nov 2026 10:00:00 +0000
Subject: FW: Safeguarding News
To: <{to}>
MIME-Version: 1.0
Message-ID: <{secrets.token_hex(8)}@example.net>
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Mon, 30 Nov 2026 09:00:00 +0000.
For more information about this format please see
http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <{sent.return_path}>
Original-Rcpt-To: <{sent.email}>
Arrival-Date: Mon, 30 Nov 2026 09:00:00 +0000
Reporting-MTA: dns; mail.example.net
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

{sent.original_headers()}
Hello.

--part1_13d.2e68ed54_boundary--
""")


def yahoo_arf(sent: Sent) -> bytes:
    """Yahoo's complaint feedback loop: ARF with the recipient redacted everywhere, so only
    our tokens and Message-ID say who it was."""
    return _crlf(f"""\
From: feedback@arf.mail.yahoo.com
To: {BOUNCE_ADDRESS}
Subject: FW: Safeguarding News: 24 Nov - 30 Nov 2026
Message-ID: <{secrets.token_hex(8)}@arf.mail.yahoo.com>
Date: Mon, 30 Nov 2026 11:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; boundary="----=_Part_1"; report-type="feedback-report"

------=_Part_1
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message from partnership.example.org on Mon, 30 Nov 2026 09:00:00 GMT

------=_Part_1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Yahoo!-Mail-Feedback/2.0
Version: 0.1
Original-Mail-From: <{sent.return_path}>
Original-Rcpt-To: redacted@yahoo.com
Received-Date: Mon, 30 Nov 2026 09:00:00 GMT
Reported-Domain: partnership.example.org
Authentication-Results: mta1000.mail.ir2.yahoo.com from=partnership.example.org; domainkeys=neutral; from=partnership.example.org; dkim=pass (ok)

------=_Part_1
Content-Type: message/rfc822

{sent.original_headers(to=False)}
Hello.

------=_Part_1--
""")


def jmrp_report(sent: Sent) -> bytes:
    """Microsoft's Junk Mail Reporting Program (Outlook.com), the older non-ARF shape: the
    original attached, the recipient in X-HmXmrOriginalRecipient."""
    return _crlf(f"""\
From: staff@hotmail.com
To: {BOUNCE_ADDRESS}
Subject: complaint about message from 192.0.2.1
Date: Mon, 30 Nov 2026 12:00:00 -0800
Message-ID: <{secrets.token_hex(8)}@jmrp.hotmail.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="--JMRP_BOUNDARY"

----JMRP_BOUNDARY
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

----JMRP_BOUNDARY
Content-Type: message/rfc822
Content-Disposition: attachment

X-HmXmrOriginalRecipient: <{sent.email}>
X-Message-Guid: {secrets.token_hex(16)}
{sent.original_headers()}
Hello.

----JMRP_BOUNDARY--
""")


def vacation_reply(sent: Sent, style: str) -> bytes:
    """An out-of-office answer, sent to the envelope sender (so with our token in To:)."""
    headers = {
        "rfc3834": "Auto-Submitted: auto-replied\n",
        "exchange": "X-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: x\n"
        "Auto-Submitted: auto-generated\n",
        "x-autoreply": "X-Autoreply: yes\n",
        "precedence": "Precedence: auto_reply\n",
        "subject-only": "",
    }[style]
    subject = {
        "exchange": "Automatic reply: Safeguarding News",
        "subject-only": "Out of Office: Safeguarding News",
    }.get(style, "Away until Monday")
    return _crlf(f"""\
From: {sent.email}
To: {sent.return_path}
Subject: {subject}
Date: Mon, 30 Nov 2026 09:05:00 +0000
Message-ID: <{secrets.token_hex(8)}@example.com>
{headers}MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

I am out of the office until 7 December with limited access to email.
For anything urgent please call 01234 567890. 550 people attended our conference.
""")


def human_reply(sent: Sent, *, to: str | None = None) -> bytes:
    return _crlf(f"""\
From: {sent.email}
To: {to or sent.return_path}
Subject: Re: Safeguarding News: 24 Nov - 30 Nov 2026
Date: Mon, 30 Nov 2026 09:30:00 +0000
Message-ID: <{secrets.token_hex(8)}@example.com>
In-Reply-To: {sent.message_id}
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Thanks for this week's issue. Could you add our training dates next time?
""")


def unsubscribe_mail(sent: Sent, *, token: str | None = None) -> bytes:
    """What a mail client sends for List-Unsubscribe's mailto: (RFC 2369, RFC 6068)."""
    return _crlf(f"""\
From: {sent.email}
To: {BOUNCE_ADDRESS}
Subject: unsubscribe {token or sent.unsubscribe_token}
Date: Mon, 30 Nov 2026 09:40:00 +0000
Message-ID: <{secrets.token_hex(8)}@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

This message was automatically generated by Mail.app to unsubscribe.
""")


def forged_dsn(sent: Sent) -> bytes:
    """A DSN made by someone without the key: every token tampered, a made-up Message-ID."""
    raw = gmail_dsn(sent)
    bad = sent.verp_token[:-2] + ("zz" if not sent.verp_token.endswith("zz") else "yy")
    raw = raw.replace(sent.verp_token.encode(), bad.encode())
    raw = raw.replace(sent.unsubscribe_token.encode(), bad.encode())
    return raw.replace(sent.message_id.encode(), b"<forged@example.com>")


def with_header(raw: bytes, header: str) -> bytes:
    """`raw` with one more header line at the top (e.g. Delivered-To from another route)."""
    return header.encode() + b"\r\n" + raw
