"""`digest check`: lint the message the next send would produce, before anyone gets it.

It builds that message exactly as a send would (the unfinished issue it would resume, or the
next issue drafted now, or a sample issue when there are no new items), for a sample
recipient, DKIM-signed when configured, and checks it against ../shared/EMAIL-RULES.md:
headers, one-click unsubscribe, the unsubscribe link in both bodies, the HTML size against
Gmail's clipping, images without alt text, links that are not absolute, leftover
placeholders, DKIM alignment and verification, the postal address and the base URL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session

from digest.compose.dkim import DkimSigner, load_signer
from digest.compose.recipients import Recipients, compose_issue
from digest.config import Settings
from digest.errors import DigestError
from digest.issues.review import PENDING
from digest.issues.select import NextIssue
from digest.lint import CheckReport, lint_message
from digest.models import utcnow
from digest.render.issue import ItemView


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
        if issue.status in PENDING:
            report.source = f"issue {issue.number} ({issue.status}): the next issue sent"
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
    from digest.suppression import suppressions_without_key

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
    from digest.issues.select import branding
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
    from digest.config_load import key_warnings

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
