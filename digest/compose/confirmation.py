"""The confirmation email of double opt-in, through the same composer and signer as a digest.

It is rendered per person (it carries their confirmation link; confirmations are few), then
made into wire bytes by `MessageTemplate` without the list headers: it is not list mail, and
RFC 3834 asks automatic mail to say `Auto-Submitted: auto-generated`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from digest.compose.recipients import configured_signer, message_settings
from digest.compose.wire import MessageTemplate, Recipient
from digest.config import Settings
from digest.render.templates import make_environment

if TYPE_CHECKING:
    from digest.compose.dkim import DkimSigner

TEMPLATE_CONFIRM_TEXT = "email/confirm.txt"
TEMPLATE_CONFIRM_HTML = "email/confirm.html"


def confirmation_subject(settings: Settings) -> str:
    return f"Please confirm your subscription to {settings.name}"


def confirmation_message(
    settings: Settings,
    recipient: Recipient,
    *,
    url: str,
    now: datetime,
    signer: DkimSigner | None | Literal["configured"] = "configured",
) -> bytes:
    """The confirmation email for `recipient` in wire form (CRLF, dot-safe for SMTP DATA)."""
    env = make_environment(settings.templates_dir)
    context = {
        "name": settings.name,
        "organisation": settings.organisation,
        "postal_address_lines": [
            ln.strip() for ln in settings.postal_address.splitlines() if ln.strip()
        ],
        "confirm_url": url,
        "valid_days": settings.confirm_token_days,
        "email": recipient.email,
    }
    template = MessageTemplate(
        settings=message_settings(settings),
        subject=confirmation_subject(settings),
        html_body=env.get_template(TEMPLATE_CONFIRM_HTML).render(context),
        text_body=env.get_template(TEMPLATE_CONFIRM_TEXT).render(context),
        date=now,
        signer=configured_signer(settings) if signer == "configured" else signer,
        list_headers=False,
        # RFC 3834 §5: sent by a program, not in reply to a message.
        extra_headers=[("Auto-Submitted", "auto-generated")],
    )
    return template.render(recipient)
