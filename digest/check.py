"""`digest check`: lint the message the next send would produce, before anyone gets it.

It builds that message exactly as a send would (the unfinished issue it would resume, or the
next issue drafted now, or a sample issue when there are no new items), for a sample
recipient, DKIM-signed when configured, and checks it against ../shared/EMAIL-RULES.md:
headers, one-click unsubscribe, the unsubscribe link in both bodies, the HTML size against
Gmail's clipping, images without alt text, links that are not absolute, leftover
placeholders, DKIM alignment and verification, the postal address and the base URL.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlmodel import Session

from digest.compose.dkim import DkimSigner, load_signer
from digest.compose.recipients import Recipients, compose_issue
from digest.config import Settings
from digest.errors import DigestError
from digest.issues import NextIssue
from digest.models import utcnow
from digest.render import PLACEHOLDER_UNSUBSCRIBE
from digest.render.fit import GMAIL_CLIP_BYTES, HTML_SIZE_TARGET
from digest.render.issue import ItemView

Level = Literal["error", "warning", "ok"]
REQUIRED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id", "List-Unsubscribe",
)  # fmt: skip
# Template syntax or an unfilled sentinel that must never reach a reader.
_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|%7B%7B|DIGESTx[A-Za-z]*x", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    level: Level
    code: str
    message: str


@dataclass
class CheckReport:
    source: str  # which message was checked, in words
    subject: str = ""
    html_bytes: int = 0
    dkim: str = "not configured"
    dkim_dns: str | None = None  # "name TXT record" to publish, when DKIM is configured
    fit: list[str] = field(default_factory=list)  # what the size guard did, in sentences
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: Level, code: str, message: str) -> None:
        self.findings.append(Finding(level, code, message))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["errors"] = len(self.errors)
        out["warnings"] = len(self.warnings)
        return out


def check_next_send(
    session: Session,
    settings: Settings,
    shape: NextIssue | None = None,
) -> CheckReport:
    """Build the message the next `digest send` would send and lint it. Sends nothing,
    stores nothing."""
    from digest.send.plan import plan_send

    report = CheckReport(source="")
    lint_settings(settings, report)
    _lint_suppressions(session, settings, report)
    try:
        plan = plan_send(session, settings, shape)
    except DigestError as exc:  # a broken template, a bad --featured: what a send would hit
        report.source = "the next issue (it could not be rendered)"
        report.add("error", "render", exc.message)
        return report
    if plan is not None and plan.resume is not None:
        issue = plan.resume
        report.source = f"issue {issue.number}, unfinished: the next send resumes it"
        subject, html_body, text_body = issue.subject, issue.html, issue.text
    elif plan is not None and plan.draft is not None:
        draft = plan.draft
        report.source = f"issue {draft.number}, the next send ({len(draft.items)} items)"
        subject, html_body, text_body = (
            draft.rendered.subject,
            draft.rendered.html,
            draft.rendered.text,
        )
        report.fit = draft.rendered.fit.describe() if draft.rendered.fit else []
    else:
        try:
            rendered = _sample_issue(settings)
        except DigestError as exc:
            report.source = "a sample issue (it could not be rendered)"
            report.add("error", "render", exc.message)
            return report
        report.source = "a sample issue: there are no new items for the next send"
        subject, html_body, text_body = rendered.subject, rendered.html, rendered.text

    signer: DkimSigner | None = None
    try:
        signer = load_signer(settings)
    except DigestError as exc:
        report.add("error", "dkim-key", exc.message + (f" ({exc.hint})" if exc.hint else ""))
    template = compose_issue(
        settings, subject=subject, html=html_body, text=text_body, signer=signer
    )
    key = None
    if settings.base_url:
        try:
            key = settings.secret_key_bytes()
        except DigestError as exc:
            report.add("error", "secret-key", exc.message + (f" ({exc.hint})" if exc.hint else ""))
    recipient = Recipients.of(settings, key=key).check_sample()
    unsubscribe = recipient.unsubscribe_url
    data = template.render(recipient)
    report.subject = template.subject
    lint_message(data, settings=settings, unsubscribe_url=unsubscribe, signer=signer, report=report)
    return report


def _lint_suppressions(session: Session, settings: Settings, report: CheckReport) -> None:
    from digest.subscribers import suppressions_without_key

    try:
        n = suppressions_without_key(session, settings.keyring())
    except DigestError:
        return  # the missing or weak key is reported with the unsubscribe link
    if n:
        report.add(
            "warning", "suppression",
            f"{n} suppression entr{'ies' if n != 1 else 'y'} (erased addresses) were made with "
            "a key that is neither the signing key nor in retired_keys_file: those people could "
            "be imported again. Put the old key in retired_keys_file.",
        )  # fmt: skip


def _sample_issue(settings: Settings) -> Any:
    """Three made-up items through the configured templates, so they are linted too."""
    from digest.issues import branding
    from digest.render.issue import render_issue

    now = utcnow()
    items = [
        ItemView(
            title=f"Sample item {n}",
            url=f"https://example.org/sample/{n}",
            summary_html="<p>A sample summary, to check the templates.</p>",
            category=category,
            published_at=now - timedelta(hours=n),
        )
        for n, category in ((1, "News"), (2, "Events"), (3, "News"))
    ]
    return render_issue(
        branding(settings), items, period_start=now - timedelta(days=7), period_end=now,
        number=None, templates_dir=settings.templates_dir,
    )  # fmt: skip


def lint_settings(settings: Settings, report: CheckReport) -> None:
    """What the settings alone say about deliverability, the footer and the keys."""
    from digest.config import key_warnings

    for warning in key_warnings(settings):
        report.add("warning", "secret-key", warning)
    if settings.postal_address.strip():
        report.add("ok", "postal-address", "the footer carries a postal address")
    else:
        report.add(
            "error", "postal-address",
            "postal_address is not set: the footer must carry the sender's postal address",
        )  # fmt: skip
    if settings.base_url:
        report.add("ok", "base-url", f"base_url is {settings.base_url}")
        if not settings.base_url.startswith("https://"):
            report.add(
                "error", "base-url",
                "base_url is not https: one-click unsubscribe (RFC 8058) needs an https link",
            )  # fmt: skip
    else:
        report.add(
            "error", "base-url",
            "base_url is not set: no https unsubscribe link, so no one-click unsubscribe "
            "(RFC 8058) and no web archive",
        )  # fmt: skip
    if settings.from_domain in ("localhost", "") or "." not in settings.from_domain:
        report.add("error", "from", f"From is on {settings.from_domain or 'no domain'}: "
                   "use an address on your organisation's domain")  # fmt: skip
    ratio = contrast_ratio(settings.accent_colour, "#ffffff")
    if ratio < 4.5:
        report.add(
            "warning", "contrast",
            f"accent_colour {settings.accent_colour} on white has a contrast of {ratio:.1f}:1; "
            "white masthead text needs at least 4.5:1 (WCAG AA): choose a darker colour",
        )  # fmt: skip
    lint_return_path(settings, report)


def lint_return_path(settings: Settings, report: CheckReport) -> None:
    """Where bounces, complaints and emailed unsubscribes come back to (VERP, inbound/)."""
    if not settings.bounce_address:
        report.add(
            "warning", "return-path",
            "bounce_address is not set: bounces go to the From address, a report can only be "
            "matched by the address it quotes, and a forged one cannot be told apart; set "
            "bounce_address (e.g. bounces@" + settings.from_domain + ") for VERP",
        )  # fmt: skip
        return
    domain = settings.bounce_address.rpartition("@")[2]
    local = settings.bounce_address.rpartition("@")[0]
    report.add(
        "ok", "return-path",
        f"each delivery's envelope sender is {local}+TOKEN@{domain} (VERP); that mailbox must "
        f"accept plus-addressing (Postfix: recipient_delimiter = +)",
    )  # fmt: skip
    from_domain = settings.from_domain
    if not (domain == from_domain or domain.endswith("." + from_domain)
            or from_domain.endswith("." + domain)):  # fmt: skip
        report.add(
            "warning", "return-path",
            f"bounce_address is on {domain}, From on {from_domain}: for DMARC's SPF alignment "
            "the return path should be on the From domain or a subdomain of it",
        )  # fmt: skip
    if settings.unsubscribe_mailto:
        from email.utils import parseaddr

        mailto = parseaddr(settings.unsubscribe_mailto)[1].lower()
        if mailto != settings.bounce_address.lower():
            report.add(
                "warning", "unsubscribe-mail",
                f"emailed unsubscribes go to {mailto}, not to bounce_address: digest acts on "
                "them only if `digest inbox fetch` reads that mailbox too",
            )  # fmt: skip
    if settings.inbox_url:
        from digest.inbound.spec import parse_source

        report.add(
            "ok", "inbox", f"`digest inbox fetch` reads {parse_source(settings.inbox_url).display}"
        )
    else:
        report.add(
            "ok", "inbox",
            "inbox_url is not set: `digest inbox fetch` needs a mailbox named, or the MTA pipes "
            "bounces to `digest inbox receive`",
        )  # fmt: skip


def lint_message(
    data: bytes,
    *,
    settings: Settings,
    unsubscribe_url: str,
    signer: DkimSigner | None,
    report: CheckReport,
) -> None:
    """Lint one finished message (bytes as sent) and add what was found to `report`."""
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    _lint_headers(msg, data, report)
    text, html = _lint_structure(msg, report)
    _lint_unsubscribe(msg, text, html, unsubscribe_url, report)
    _lint_html(html, report)
    leftovers = sorted({m.group(0) for m in _LEFTOVER.finditer(text + html)})
    if PLACEHOLDER_UNSUBSCRIBE in data.decode("ascii", "replace"):
        leftovers.append(PLACEHOLDER_UNSUBSCRIBE)
    if leftovers:
        report.add("error", "placeholders", "leftover template text or placeholders: "
                   + ", ".join(repr(x) for x in leftovers))  # fmt: skip
    else:
        report.add("ok", "placeholders", "no leftover template text or placeholders")
    _lint_dkim(msg, data, settings, signer, report)


def _lint_headers(msg: EmailMessage, data: bytes, report: CheckReport) -> None:
    problems = [f"{h} is missing" for h in REQUIRED_HEADERS if msg[h] is None]
    head = data.split(b"\r\n\r\n", 1)[0]
    if any(len(line) > 998 for line in head.split(b"\r\n")):
        problems.append("a header line is longer than 998 characters (RFC 5322 §2.1.1)")
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        if len(msg.get_all(name) or []) > 1:
            problems.append(f"{name} appears more than once")
    if msg["From"] is not None and len(getaddresses([str(msg["From"])])) != 1:
        problems.append("From must be exactly one address")
    if msg["Message-ID"] is not None and not re.fullmatch(
        r"<[^<>@\s]+@[^<>@\s]+>", str(msg["Message-ID"]).strip()
    ):
        problems.append(f"Message-ID {msg['Message-ID']} is not <id@domain>")
    if msg["Date"] is not None:
        try:
            parsedate_to_datetime(str(msg["Date"]))
        except (TypeError, ValueError):
            problems.append(f"Date {msg['Date']!r} is not an RFC 5322 date")
    if msg["List-Id"] is not None and not re.search(r"<[^<>\s]+\.[^<>\s]+>$", str(msg["List-Id"])):
        problems.append(f"List-Id {msg['List-Id']!r} is not 'Name <id.domain>' (RFC 2919)")
    if msg["MIME-Version"] is not None and str(msg["MIME-Version"]).strip() != "1.0":
        problems.append("MIME-Version is not 1.0")
    if problems:
        for p in problems:
            report.add("error", "headers", p)
    else:
        report.add("ok", "headers", "From, To, Subject, Date, Message-ID, MIME-Version, List-Id "
                   "and List-Unsubscribe present and well-formed")  # fmt: skip


def _lint_structure(msg: EmailMessage, report: CheckReport) -> tuple[str, str]:
    text = html = ""
    if msg.get_content_type() != "multipart/alternative":
        report.add("error", "structure", f"the message is {msg.get_content_type()}, "
                   "not multipart/alternative with a text and an HTML part")  # fmt: skip
        return text, html
    parts = list(msg.iter_parts())
    types = [p.get_content_type() for p in parts]
    if types != ["text/plain", "text/html"]:
        report.add("error", "structure", f"parts are {types}; expected text/plain, then text/html")
    for p in parts:
        if p.get_content_type() == "text/plain":
            text = str(p.get_content())
        elif p.get_content_type() == "text/html":
            html = str(p.get_content())
    if types == ["text/plain", "text/html"]:
        report.add("ok", "structure", "multipart/alternative: text/plain, then text/html")
    return text, html


def _lint_unsubscribe(
    msg: EmailMessage, text: str, html: str, url: str, report: CheckReport
) -> None:
    header = str(msg["List-Unsubscribe"] or "")
    links = re.findall(r"<([^<>]+)>", header)
    https = [u for u in links if u.startswith("https://")]
    ok = True
    if not https:
        ok = False
        report.add("error", "unsubscribe", "List-Unsubscribe has no https link (needed for "
                   "one-click unsubscribe, RFC 8058; set base_url)")  # fmt: skip
    elif str(msg["List-Unsubscribe-Post"] or "").strip() != "List-Unsubscribe=One-Click":
        ok = False
        report.add("error", "unsubscribe", "List-Unsubscribe-Post: List-Unsubscribe=One-Click "
                   "is missing (RFC 8058)")  # fmt: skip
    if not any(u.startswith("mailto:") for u in links):
        report.add("warning", "unsubscribe", "List-Unsubscribe has no mailto: link (RFC 2369)")
    escaped = url.replace("&", "&amp;")
    if url not in text:
        ok = False
        report.add("error", "unsubscribe", "the plain-text part has no unsubscribe link")
    if f'href="{escaped}"' not in html and f'href="{url}"' not in html:
        ok = False
        report.add("error", "unsubscribe", "the HTML part has no unsubscribe link")
    if ok:
        report.add(
            "ok", "unsubscribe", "one-click unsubscribe headers, and the link in both bodies"
        )


class _HtmlScan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.html_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "html":
            self.html_attrs = a
        elif tag == "img":
            self.images.append(a)
        elif tag == "a" and "href" in a:
            self.links.append(a["href"] or "")


def _lint_html(html: str, report: CheckReport) -> None:
    size = len(html.encode("utf-8"))
    report.html_bytes = size
    kb = f"{size / 1024:.1f} KB"
    if size > GMAIL_CLIP_BYTES:
        report.add(
            "error",
            "size",
            f"the HTML is {kb}: Gmail clips messages over about "
            f"{GMAIL_CLIP_BYTES / 1000:.0f} KB, hiding the rest and the unsubscribe link",
        )
    elif size > HTML_SIZE_TARGET:
        report.add("warning", "size", f"the HTML is {kb}, close to Gmail's clipping limit")
    else:
        report.add("ok", "size", f"the HTML is {kb}, under Gmail's clipping limit")
    scan = _HtmlScan()
    scan.feed(html)
    scan.close()
    if not scan.html_attrs.get("lang"):
        report.add("warning", "accessibility", "<html> has no lang attribute")
    no_alt = [str(i.get("src")) for i in scan.images if i.get("alt") is None]
    for src in no_alt:
        report.add("error", "images", f"image without alt text: {src}")
    bad_src = [
        str(i.get("src")) for i in scan.images if not str(i.get("src") or "").startswith("https://")
    ]
    for src in bad_src:
        report.add("error", "images", f"image not loaded from an absolute https URL: {src}")
    if not no_alt and not bad_src:
        report.add(
            "ok", "images", f"{len(scan.images)} image(s), each with alt text and an https source"
        )
    bad_links = []
    for href in scan.links:
        href = href.strip()
        if href.startswith("#"):
            if href[1:] not in scan.ids:
                bad_links.append(f"{href} (no element has that id)")
            continue
        parts = urlsplit(href)
        if parts.scheme in ("http", "https") and parts.netloc:
            continue
        if parts.scheme == "mailto" and "@" in href:
            continue
        bad_links.append(href or "(empty)")
    for href in bad_links[:20]:
        report.add("error", "links", f"link that is not an absolute http(s) URL: {href}")
    if len(bad_links) > 20:
        report.add("error", "links", f"…and {len(bad_links) - 20} more such links")
    if not bad_links:
        report.add(
            "ok", "links", f"{len(scan.links)} links, all absolute http(s), mailto or in-page"
        )


def _lint_dkim(
    msg: EmailMessage, data: bytes, settings: Settings, signer: DkimSigner | None,
    report: CheckReport,
) -> None:  # fmt: skip
    if signer is None:
        if not settings.dkim_private_key_file:
            report.add("warning", "dkim", "messages are not DKIM-signed: Gmail, Yahoo and "
                       "Microsoft require DKIM for bulk senders (set dkim_domain, dkim_selector "
                       "and dkim_private_key_file, or sign at your relay)")  # fmt: skip
        return
    report.dkim = f"{signer.algorithm.decode()} with {signer.dns_name()}"
    report.dkim_dns = f'{signer.dns_name()} TXT "{signer.dns_record()}"'
    from_domain = settings.from_domain
    d = signer.domain
    if from_domain == d or from_domain.endswith("." + d) or d.endswith("." + from_domain):
        report.add("ok", "dkim-alignment", f"DKIM domain {d} is aligned with the From domain "
                   f"{from_domain} (DMARC relaxed alignment)")  # fmt: skip
    else:
        report.add(
            "error",
            "dkim-alignment",
            f"DKIM domain {d} is not aligned with the From "
            f"domain {from_domain}: DMARC fails unless another aligned signature is added",
        )
    if msg["DKIM-Signature"] is None:
        report.add("error", "dkim", "the message has no DKIM-Signature header")
        return
    try:
        verified = signer.verify(data)
    except Exception as exc:  # dkimpy raises several kinds; any of them means "does not verify"
        verified = False
        report.add("error", "dkim", f"the DKIM signature could not be checked: {exc}")
        return
    if verified:
        report.add("ok", "dkim", f"the DKIM signature ({signer.algorithm.decode()}) verifies "
                   "with the configured key")  # fmt: skip
    else:
        report.add("error", "dkim", "the DKIM signature does not verify with the configured key")


def contrast_ratio(colour_a: str, colour_b: str) -> float:
    """WCAG 2 contrast ratio of two #rgb / #rrggbb colours."""

    def luminance(colour: str) -> float:
        h = colour.lstrip("#")
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        channels = []
        for i in (0, 2, 4):
            c = int(h[i : i + 2], 16) / 255
            channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
        r, g, b = channels
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    la, lb = sorted((luminance(colour_a), luminance(colour_b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def format_report(report: CheckReport) -> str:
    """The readable report `digest check` prints."""
    lines = [f"Checked {report.source}."]
    if report.subject:
        lines.append(f"Subject: {report.subject}")
    lines.append(f"DKIM: {report.dkim}")
    if report.dkim_dns:
        lines.append(f"  publish: {report.dkim_dns}")
    lines.extend(f"Size guard: {s}" for s in report.fit)
    lines.append("")
    label = {"error": "ERROR", "warning": "warning", "ok": "ok"}
    for f in sorted(report.findings, key=lambda f: ("error", "warning", "ok").index(f.level)):
        lines.append(f"  {label[f.level]:<8} {f.code:<15} {f.message}")
    lines.append("")
    e, w = len(report.errors), len(report.warnings)
    verdict = "fix the errors before sending" if e else "ready to send"
    lines.append(
        f"{e} error{'s' if e != 1 else ''}, {w} warning{'s' if w != 1 else ''}: {verdict}."
    )
    return "\n".join(lines)
