"""A realistic digest: ~50 news items whose rendered message is ~60 KB, the same in every figure.

The items are deterministic (seeded), with the kind of text a safeguarding partnership sends:
paragraphs, lists, links, curly quotes and a few non-ASCII names (so quoted-printable has
real work to do). `render()` goes through the real digest.render.render_issue (Jinja2 +
premailer), once.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

FROM = "Safeguarding News <news@partnership.example.org>"
NAME = "Safeguarding News"
ORGANISATION = "Example Safeguarding Partnership"
POSTAL = "Civic Centre, 1 Market Street\nExampletown EX1 2AB"
BASE_URL = "https://news.partnership.example.org"
SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 - a throwaway key for scratch databases
N_ITEMS = 33
# Items fall in the week before the run, so `digest send`'s default window picks them all.
T0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=6)

_CATEGORIES = ["Procedures", "Training", "Research", "Practice guidance", "Local news"]
_SUBJECTS = [
    "child trafficking",
    "neglect",
    "children missing from home or care",
    "domestic abuse",
    "county lines",
    "online safety",
    "private fostering",
    "self-harm",
    "early help",
    "child sexual exploitation",
    "safer recruitment",
    "information sharing",
]
_SENTENCES = [
    "Research carried out by The Children’s Society and Refugee Council, “Still at Risk”, "
    "found that victims are still being inadequately protected.",
    "The updated procedure sets out what practitioners must do within the first 72 hours.",
    "Return interviews should be offered to every child, and recorded on the case file.",
    "The briefing is open to staff from health, education, police and the voluntary sector.",
    "Gwasanaethau Cymdeithasol in Łódź and Zürich shared their experience of joint working.",
    "Managers are asked to make sure their teams have read the guidance before 1 December.",
    "The review found that agencies held pieces of information that, together, showed risk.",
    "A short film for young people explains how to ask for help and who to talk to.",
    "Places are limited: book early, and tell us about any access needs when you book.",
    "The toolkit includes a screening tool, a practice guide and case studies.",
    "Feedback from the pilot was positive; 87% of practitioners found it useful.",
    "This replaces the previous version, which should no longer be used.",
]


def items_for(n: int = N_ITEMS, *, seed: int = 5) -> list[dict[str, object]]:
    """Plain dicts (title, url, summary_html, category, published_at) for n items."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        subject = rnd.choice(_SUBJECTS)
        # Digest summaries are short: a sentence or two, sometimes a list or a "read more" link.
        paras = ["<p>" + " ".join(rnd.sample(_SENTENCES, rnd.randint(1, 2))) + "</p>"]
        if rnd.random() < 0.15:
            bullets = "".join(f"<li>{s}</li>" for s in rnd.sample(_SENTENCES, 2))
            paras.append(f"<ul>{bullets}</ul>")
        if rnd.random() < 0.3:
            paras.append(
                f'<p>Read more on <a href="https://example.org/{subject.replace(" ", "-")}/{i}">'
                f"the partnership’s {subject} page</a>.</p>"
            )
        out.append(
            {
                "title": f"{subject.capitalize()}: update {i + 1}",
                "url": f"https://example.org/news/{subject.replace(' ', '-')}-{i + 1}?utm=digest",
                "summary_html": "".join(paras),
                "category": _CATEGORIES[i % len(_CATEGORIES)],
                "published_at": T0 + timedelta(minutes=97 * i),
            }
        )
    return out


def branding():  # noqa: ANN201 - digest types, imported late so --source can choose the digest
    from digest.render.issue import Branding

    return Branding(
        name=NAME,
        organisation=ORGANISATION,
        postal_address=POSTAL,
        base_url=BASE_URL,
        timezone=ZoneInfo("Europe/London"),
        subject_template="{{ name }}: {{ date_range }}",
    )


def message_settings():  # noqa: ANN201
    from digest.compose.wire import MessageSettings

    return MessageSettings(
        from_address=FROM,
        reply_to="Business Unit <unit@partnership.example.org>",
        list_id="Safeguarding News <safeguarding-news.partnership.example.org>",
        mailto_unsubscribe="mailto:news@partnership.example.org?subject=unsubscribe",
        message_id_domain="partnership.example.org",
    )


def render(n: int = N_ITEMS):  # noqa: ANN201
    """The RenderedIssue of n items, through the real render_issue (Jinja2 + premailer)."""
    from digest.news.normalise import sanitise_html
    from digest.render.issue import ItemView, render_issue

    views = [
        ItemView(
            title=str(d["title"]),
            url=str(d["url"]),
            summary_html=sanitise_html(str(d["summary_html"])),
            category=str(d["category"]),
            published_at=d["published_at"],  # type: ignore[arg-type]
        )
        for d in items_for(n)
    ]
    return render_issue(
        branding(),
        views,
        period_start=T0 - timedelta(days=1),
        period_end=T0 + timedelta(days=6),
        number=7,
    )


def digest_env(database_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    """DIGEST_* settings for a `digest` subprocess: everything explicit, no config file."""
    env = {
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "DIGEST_FROM": FROM,
        "DIGEST_BASE_URL": BASE_URL,
        "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_NAME": NAME,
        "DIGEST_ORGANISATION": ORGANISATION,
        "DIGEST_POSTAL_ADDRESS": POSTAL.replace("\n", ", "),
        "DIGEST_LOOKBACK_DAYS": "366",
        "DIGEST_SEND_RATE": "0",
    }
    env.update(extra)
    return env
