"""The one place that says who a message is for, and the one composer of an issue's message.

`Recipients` makes every `Recipient` — To, Message-ID and unsubscribe link — for the real
send, a dry run, a test copy, the preview, `digest check` and the confirmation email, so the
rules (a Message-ID stable per issue and subscriber; a test copy that cannot unsubscribe
anyone) live here once. `compose_issue` makes the `MessageTemplate` of an issue, DKIM-signed
when signing is configured.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import TYPE_CHECKING, Literal

from digest.compose.wire import MessageSettings, MessageTemplate, Recipient
from digest.config import Settings
from digest.inbound import verp
from digest.models import utcnow
from digest.tokens import TEST_COPY_TOKEN, make_token

if TYPE_CHECKING:
    from digest.compose.dkim import DkimSigner

PREVIEW_ADDRESS = "subscriber@example.org"
PREFERENCES = "preferences"  # the purpose of the token of a subscriber's preferences page
CHECK_ADDRESS = "check@example.net"


def message_settings(settings: Settings, *, domain: str | None = None) -> MessageSettings:
    """The parts of every message that come from the settings. `domain`: the Message-ID
    domain frozen in an issue (a retry keeps its Message-ID even if `from` changed since)."""
    from_domain = settings.from_domain
    slug = re.sub(r"[^a-z0-9]+", "-", settings.name.lower()).strip("-") or "digest"
    return MessageSettings(
        from_address=settings.from_address,
        reply_to=settings.reply_to,
        list_id=settings.list_id or f"{settings.name} <{slug}.{from_domain}>",
        mailto_unsubscribe=f"mailto:{mailto_address(settings)}?subject=unsubscribe",
        message_id_domain=domain or from_domain,
    )


def mailto_address(settings: Settings) -> str:
    """Where List-Unsubscribe's mailto: goes: unsubscribe_mailto, else the bounce mailbox that
    `digest inbox fetch` reads (bounce_address), else the From address."""
    return parseaddr(
        settings.unsubscribe_mailto or settings.bounce_address or settings.from_address
    )[1]


def configured_signer(settings: Settings) -> DkimSigner | None:
    """The DKIM signer when signing is configured (its key read once), else None."""
    if not (settings.dkim_domain or settings.dkim_selector or settings.dkim_private_key_file):
        return None
    from digest.compose.dkim import load_signer  # dkimpy is a heavy import: only when configured

    return load_signer(settings)


def compose_issue(
    settings: Settings,
    *,
    subject: str,
    html: str,
    text: str,
    date: datetime | None = None,
    domain: str | None = None,
    signer: DkimSigner | None | Literal["configured"] = "configured",
) -> MessageTemplate:
    """An issue's message, prepared once; `template.render(recipient)` per recipient."""
    return MessageTemplate(
        settings=message_settings(settings, domain=domain),
        subject=subject,
        html_body=html,
        text_body=text,
        date=date or utcnow(),
        signer=configured_signer(settings) if signer == "configured" else signer,
    )


def message_id(issue_uid: str, subscriber_uid: str, domain: str) -> str:
    """Stable per (issue, subscriber): a retry of the same delivery reuses it."""
    return f"<digest.{issue_uid}.{subscriber_uid}@{domain}>"


@dataclass(frozen=True)
class Recipients:
    """Recipients of one issue (or of a draft: `issue_uid` "dryrun" for a dry run)."""

    base_url: str | None
    mailto_unsubscribe: str
    domain: str
    envelope_from: str  # MAIL FROM: the From address (bounces come back to it)
    issue_uid: str = "draft"
    key: bytes | None = None  # signs unsubscribe tokens; None: nobody real is addressed
    # A real issue's deliveries (issue_number set) carry delivery tokens (inbound/verp.py):
    # MAIL FROM bounces+TOKEN@domain when bounce_address is set (VERP), and a mailto: whose
    # subject holds a token, so a bounce or an emailed unsubscribe names its one delivery.
    issue_number: int | None = None
    bounce_address: str | None = None
    mailto: str = ""  # the bare address of the mailto:

    @classmethod
    def of(
        cls,
        settings: Settings,
        *,
        issue_uid: str = "draft",
        key: bytes | None = None,
        domain: str | None = None,
        issue_number: int | None = None,
    ) -> Recipients:
        msg = message_settings(settings, domain=domain)
        return cls(
            base_url=settings.base_url, mailto_unsubscribe=msg.mailto_unsubscribe,
            domain=msg.message_id_domain, envelope_from=parseaddr(settings.from_address)[1],
            issue_uid=issue_uid, key=key, issue_number=issue_number,
            bounce_address=settings.bounce_address, mailto=mailto_address(settings),
        )  # fmt: skip

    def _link(self, token: str) -> str:
        return f"{self.base_url}/unsubscribe/{token}" if self.base_url else self.mailto_unsubscribe

    def _preferences(self, token: str) -> str:
        """The "Choose what you receive" page (web/preferences.py); none without base_url."""
        return f"{self.base_url}/preferences/{token}" if self.base_url else ""

    def _for(
        self, email: str, name: str, message_id: str, link: str, preferences: str = ""
    ) -> Recipient:
        return Recipient(email, name, message_id, link, envelope_from=self.envelope_from,
                         preferences_url=preferences)  # fmt: skip

    def subscriber(self, uid: str, email: str, name: str) -> Recipient:
        """A subscriber's message: their unsubscribe and preferences links (signed tokens, made
        only where there is a web address to put them in), the issue's stable Message-ID, and
        for a real issue its delivery tokens (VERP return path, tokened mailto:)."""
        key = self.key
        assert key is not None, "a subscriber's link needs the secret key"
        mid = message_id(self.issue_uid, uid, self.domain)
        web, preferences = "", ""
        if self.base_url:
            web = f"{self.base_url}/unsubscribe/{make_token(key, 'unsubscribe', uid)}"
            preferences = f"{self.base_url}/preferences/{make_token(key, PREFERENCES, uid)}"
        envelope_from, mailto = self.envelope_from, ""
        if self.issue_number is not None:
            try:
                unsub = verp.make_delivery_token(key, verp.UNSUBSCRIBE, self.issue_number, uid)
                mailto = f"mailto:{self.mailto}?subject=unsubscribe%20{unsub}"
                if self.bounce_address:
                    bounce = verp.make_delivery_token(key, verp.BOUNCE, self.issue_number, uid)
                    envelope_from = verp.verp_address(self.bounce_address, bounce)
            except ValueError:  # a uid that is not digest's own (32 hex): no delivery token
                envelope_from, mailto = self.envelope_from, ""
        if not mailto:
            return self._for(email, name, mid, web or self.mailto_unsubscribe, preferences)
        return Recipient(
            email, name, mid, web or mailto, envelope_from=envelope_from,
            mailto_unsubscribe=mailto, preferences_url=preferences,
        )  # fmt: skip

    def test_copy(self, email: str) -> Recipient:
        """A test copy: a fresh Message-ID, and a link that cannot unsubscribe anyone."""
        mid = f"<digest.test.{secrets.token_hex(8)}@{self.domain}>"
        return self._for(
            email, "", mid, self._link(TEST_COPY_TOKEN), self._preferences(TEST_COPY_TOKEN)
        )

    def preview(self) -> Recipient:
        """The sample reader of `digest preview`."""
        mid = f"<digest.preview.{utcnow():%Y%m%d%H%M%S}@{self.domain}>"
        return self._for(PREVIEW_ADDRESS, "Preview Reader", mid, self._link("preview"),
                         self._preferences("preview"))  # fmt: skip

    def check_sample(self) -> Recipient:
        """The sample reader of `digest check`: a real-shaped token, for nobody."""
        key = self.key or b"check-only-not-a-key"
        token = make_token(key, "unsubscribe", "check-sample")
        mid = f"<digest.check.sample@{self.domain}>"
        preferences = self._preferences(make_token(key, PREFERENCES, "check-sample"))
        return self._for(CHECK_ADDRESS, "Sample Reader", mid, self._link(token), preferences)

    def confirmation(self, email: str, name: str) -> Recipient:
        """The person asking to subscribe (the confirmation email has no unsubscribe link)."""
        return self._for(email, name, f"<digest.confirm.{secrets.token_hex(8)}@{self.domain}>", "")
