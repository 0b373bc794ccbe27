"""The checks `digest check` runs on one finished message (its bytes, as a send would hand them
over): headers, structure, the unsubscribe link in both bodies and List-Unsubscribe, the HTML
(size, alt text, absolute links, leftover placeholders) and the DKIM signature."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urlsplit

from digest.compose.dkim import DkimSigner
from digest.config import Settings
from digest.render import PLACEHOLDER_PREFERENCES, PLACEHOLDER_UNSUBSCRIBE
from digest.render.fit import GMAIL_CLIP_BYTES, HTML_SIZE_TARGET

Level = Literal["error", "warning", "ok"]


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


REQUIRED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id", "List-Unsubscribe",
)  # fmt: skip


# Template syntax or an unfilled sentinel that must never reach a reader.
_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|%7B%7B|DIGESTx[A-Za-z]*x", re.IGNORECASE)


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
    for placeholder in (PLACEHOLDER_UNSUBSCRIBE, PLACEHOLDER_PREFERENCES):
        if placeholder in data.decode("ascii", "replace"):
            leftovers.append(placeholder)
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
