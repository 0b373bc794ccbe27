"""T1: per-recipient CPU of MessageTemplate.render() against building the same message with
email.message.EmailMessage per recipient, in this process, with the results parsed back and
compared (every header, and the decoded text of both parts) before anything is timed.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import corpus

HEADERS = (
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
)


# Who is on a list: the To header is the one per-recipient part whose cost depends on the person
# (a bare address, an ASCII name, or a name that needs RFC 2047 encoding), so each is timed on
# its own and the headline is a mix of 25% no name, 60% ASCII names, 15% non-ASCII names.
NAME_CLASSES = {
    "no name": [""],
    "ASCII name": ["Ana Jones", "Reader", "Mark Taylor-Smith", "Priya Patel"],
    "non-ASCII name": ["Zofia Kowalczyk-Łęcka", "O'Brien, Siobhán", "Jürgen Groß"],
}
MIX = {"no name": 5, "ASCII name": 12, "non-ASCII name": 3}  # per 20 recipients


def recipients(n: int, name_class: str | None = None) -> list[Any]:
    """n recipients of one name class, or the MIX when name_class is None."""
    from digest.compose.wire import Recipient

    pattern = [c for c, k in MIX.items() for _ in range(k)] if name_class is None else [name_class]
    out = []
    for i in range(n):
        names = NAME_CLASSES[pattern[i % len(pattern)]]
        name = names[i % len(names)]
        out.append(
            Recipient(
                email=f"reader{i}@example.net",
                name=f"{name} {i}" if name else "",
                message_id=f"<digest.0123456789abcdef.{i:016x}@partnership.example.org>",
                unsubscribe_url=f"{corpus.BASE_URL}/unsubscribe/{i:016x}.{'S' * 27}",
                preferences_url=f"{corpus.BASE_URL}/preferences/{i:016x}.{'P' * 27}",
            )
        )
    return out


class Reference:
    """The naive way: a fresh EmailMessage per recipient, serialised for SMTP."""

    def __init__(self, rendered: Any, msg: Any, date: datetime) -> None:
        from digest.render import fill_links

        self.fill_links = fill_links
        self.rendered, self.msg, self.date = rendered, msg, format_datetime(date)

    def build(self, r: Any) -> bytes:
        fill_links = self.fill_links
        m, url = self.msg, r.unsubscribe_url
        ref = EmailMessage()
        ref["From"] = m.from_address
        ref["Reply-To"] = m.reply_to
        ref["To"] = Address(display_name=r.name, addr_spec=r.email) if r.name else r.email
        ref["Subject"] = self.rendered.subject
        ref["Date"] = self.date
        ref["Message-ID"] = r.message_id
        ref["List-Id"] = m.list_id
        ref["List-Unsubscribe"] = f"<{url}>, <{m.mailto_unsubscribe}>"
        ref["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        ref.set_content(fill_links(self.rendered.text, url, r.preferences_url))
        ref.add_alternative(fill_links(self.rendered.html, url, r.preferences_url), subtype="html")
        return ref.as_bytes(policy=policy.SMTP)


def _parse(data: bytes) -> Any:
    return message_from_bytes(data, policy=policy.default)


def check_equivalent(ours: bytes, ref: bytes) -> list[str]:
    """Differences between the two messages as a reader's mail program would see them."""
    a, b = _parse(ours), _parse(ref)
    problems = []
    for h in HEADERS:
        if str(a[h]) != str(b[h]):
            problems.append(f"{h}: {a[h]!r} != {b[h]!r}")
    pa, pb = list(a.iter_parts()), list(b.iter_parts())
    if [p.get_content_type() for p in pa] != [p.get_content_type() for p in pb]:
        problems.append("part types differ")
    for x, y in zip(pa, pb, strict=False):
        if x.get_content().replace("\r\n", "\n") != y.get_content().replace("\r\n", "\n"):
            problems.append(f"{x.get_content_type()} decodes differently")
    return problems


def _per_call(fn: Any, items: list[Any], repeats: int) -> list[float]:
    """CPU seconds per call, one figure per repeat (process_time: this process's user+sys)."""
    for r in items[:20]:
        fn(r)  # warm up
    out = []
    for _ in range(repeats):
        start = time.process_time()
        for r in items:
            fn(r)
        out.append((time.process_time() - start) / len(items))
    return out


def run(*, quick: bool) -> dict[str, Any]:
    from digest.compose.wire import MessageTemplate

    rendered = corpus.render()
    msg = corpus.message_settings()
    date = datetime.now(UTC).replace(microsecond=0)
    template = MessageTemplate(
        settings=msg,
        subject=rendered.subject,
        html_body=rendered.html,
        text_body=rendered.text,
        date=date,
    )
    reference = Reference(rendered, msg, date)
    n_ours, n_ref = (1000, 100) if quick else (6000, 300)
    repeats = 3 if quick else 5
    # Equivalence first, on every kind of name.
    problems = []
    for r in recipients(20) + recipients(3, "non-ASCII name"):
        ours, ref = template.render(r), reference.build(r)
        problems += [f"{r.email}: {p}" for p in check_equivalent(ours, ref)]
    sample = recipients(2)[1]
    out: dict[str, Any] = {
        "message_bytes": len(template.render(sample)),
        "reference_message_bytes": len(reference.build(sample)),
        "items": corpus.N_ITEMS,
        "equivalent": not problems,
        "problems": problems[:10],
        "mix": MIX,
        "classes": {},
    }
    for cls in [None, *NAME_CLASSES]:
        ours_runs = _per_call(template.render, recipients(n_ours, cls), repeats)
        ref_runs = _per_call(reference.build, recipients(n_ref, cls), repeats)
        ours_s, ref_s = statistics.median(ours_runs), statistics.median(ref_runs)
        out["classes"][cls or "mix"] = {
            "render_us": ours_s * 1e6,
            "emailmessage_us": ref_s * 1e6,
            "ratio": ref_s / ours_s,
            "render_us_runs": [round(x * 1e6, 1) for x in ours_runs],
            "emailmessage_us_runs": [round(x * 1e6, 1) for x in ref_runs],
        }
    out.update(out["classes"]["mix"])
    return out
