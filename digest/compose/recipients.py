"""The one place that says who a message is for: recipients and their Message-IDs and
unsubscribe links, for the real send, a test copy, a dry run, the preview and `digest check`."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import parseaddr

from digest.compose.wire import MessageSettings, MessageTemplate
from digest.config import Settings
from digest.models import Issue, utcnow
from digest.tokens import make_token


def message_settings(settings: Settings) -> MessageSettings:
    domain = settings.from_domain
    slug = re.sub(r"[^a-z0-9]+", "-", settings.name.lower()).strip("-") or "digest"
    unsub = settings.unsubscribe_mailto or settings.from_address
    return MessageSettings(
        from_address=settings.from_address,
        reply_to=settings.reply_to,
        list_id=settings.list_id or f"{settings.name} <{slug}.{domain}>",
        mailto_unsubscribe=f"mailto:{parseaddr(unsub)[1]}?subject=unsubscribe",
        message_id_domain=domain,
    )


def unsubscribe_url(settings: Settings, msg: MessageSettings, key: bytes, uid: str) -> str:
    if settings.base_url:
        return f"{settings.base_url}/unsubscribe/{make_token(key, 'unsubscribe', uid)}"
    return msg.mailto_unsubscribe


def message_id(issue_uid: str, subscriber_uid: str, domain: str) -> str:
    """Stable per (issue, subscriber): a retry of the same delivery reuses it."""
    return f"<digest.{issue_uid}.{subscriber_uid}@{domain}>"


def issue_template(
    settings: Settings, issue: Issue, date: datetime | None = None
) -> MessageTemplate:
    signer = None
    if settings.dkim_domain or settings.dkim_selector or settings.dkim_private_key_file:
        from digest.compose.dkim import (
            load_signer,  # dkimpy is a heavy import: only when configured
        )

        signer = load_signer(settings)  # DKIM: key read once per issue
    return MessageTemplate(
        settings=message_settings(settings),
        subject=issue.subject,
        html_body=issue.html,
        text_body=issue.text,
        date=date or utcnow(),
        signer=signer,
    )
