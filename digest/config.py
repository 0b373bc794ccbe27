"""Settings: one typed object from defaults, `digest.toml` and `DIGEST_*` environment variables.

Precedence (last wins): built-in defaults < config file < environment < command-line options.
Secrets (SMTP password, secret key) come only from the environment or from a file that only
its owner can read; they are never printed.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from digest.errors import ConfigError
from digest.secret_files import check_key_strength, read_secret_file
from digest.smtp_url import SmtpConfig, parse_smtp_url
from digest.tokens import Keyring

SECRET_KEYS = frozenset({"smtp_password", "secret_key", "preview_token", "inbox_password"})


# Optional settings where "" (an empty value in the file or the environment) means not set.
_BLANK_IS_UNSET = (
    "base_url", "logo_url", "bounce_address", "inbox_url", "inbox_done_folder",
    "inbox_oauth2_token_command",
)  # fmt: skip


class Settings(BaseModel):
    """Every setting of digest. Keys are the names used in digest.toml; DIGEST_<KEY> overrides."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # The newsletter
    name: str = "Weekly digest"
    from_address: str = Field("Digest <digest@localhost>", alias="from")
    reply_to: str | None = None
    base_url: str | None = None
    organisation: str = ""
    postal_address: str = ""
    subject: str = "{{ name }}: {{ date_range }}"
    timezone: str = "Europe/London"
    list_id: str | None = None
    unsubscribe_mailto: str | None = None
    lookback_days: int = Field(7, ge=1, le=366)
    # the order of the digest's sections (categories, matched whatever their case and
    # spacing); the others follow alphabetically. DIGEST_SECTIONS: names separated by commas
    sections: list[str] = Field(default_factory=list)
    templates_dir: str | None = None
    language: str = "en"  # lang of the email's <html>; dir follows (rtl for ar, fa, he, ur…)
    # addresses at .local, .test, .internal, .localhost…: refused unless this is an intranet or
    # a staging set-up that really delivers there
    allow_special_use_domains: bool = False

    # Branding of the email: a logo (https image), the accent colour, a line in the footer
    logo_url: str | None = None
    accent_colour: str = "#1f3a5f"
    footer_text: str = ""

    # News sources: a feed or page address typed by staff may be private (an intranet feed);
    # false refuses those too. A redirect to another host must always lead to a public address.
    allow_private_feeds: bool = True

    # DKIM signing (RFC 6376): all three, or none. The key file (PEM RSA, or an Ed25519 key) must
    # be readable by its owner only.
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key_file: str | None = None
    # Helper processes that make the signatures of a send (digest.send.signers); unset: one
    # for each core, at most 4, when smtp_connections > 1; 0 signs in the send process.
    dkim_signing_processes: int | None = Field(None, ge=0, le=16)

    # Storage
    database_url: str = "sqlite:///subscribers.db"

    # Sending
    smtp_url: str = "smtp://localhost:25"
    smtp_password: str | None = None
    smtp_password_file: str | None = None
    smtp_ca_file: str | None = None
    smtp_timeout: float = Field(30.0, gt=0)
    smtp_connections: int = Field(1, ge=1, le=64)
    send_rate: float = Field(0.0, ge=0)  # messages per second; 0 means as fast as the server takes
    send_rate_per_hour: float = Field(0.0, ge=0)  # 0 means no hourly cap
    retry_lifetime_hours: float = Field(72.0, gt=0)  # temporary failures are retried this long
    retry_base_seconds: float = Field(60.0, gt=0)  # first retry delay; doubles each attempt
    retry_wait_seconds: float = Field(300.0, ge=0)  # how long one run waits for due retries
    smtp_down_seconds: float = Field(300.0, ge=0)  # unreachable this long: stop, exit 75
    lease_seconds: float = Field(60.0, ge=1)  # a crashed worker's rows are re-sent after this
    # one SMTP transaction (or connecting and logging in) may take at most this long in all,
    # however slowly the server trickles its replies
    smtp_transaction_seconds: float = Field(120.0, gt=0)
    # the reply to the final "." may take longer (RFC 5321 §4.5.3.2.6 recommends 10 minutes)
    smtp_final_reply_seconds: float = Field(600.0, gt=0)
    # this many permanent failures in a row stop the run: a relay refusing everyone is about
    # the sender, not the recipients (0: never)
    max_consecutive_failures: int = Field(20, ge=0)

    # The scheduled job (`digest send --scheduled`)
    schedule: Literal["weekly", "daily"] = "weekly"
    # How often subscribers may choose to get the digest (the first is the default, and what
    # a subscriber whose frequency is not offered gets). Unset: [schedule], i.e. ["weekly"].
    frequencies: tuple[Literal["weekly", "daily"], ...] | None = None
    weekly_day: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = "monday"  # the weekly issue is made on this day or later in its ISO week
    # The topics (item categories) in the order the preferences page shows them; unset: every
    # category items have, by name
    topics: tuple[str, ...] | None = None
    max_issue_age_hours: float = Field(24.0, gt=0)  # an older unfinished issue needs --force
    # "required": `send --scheduled` makes the period's issue a draft, sends a review copy to
    # review_to, and sends to the list only after `digest issues approve` (issues/review.py)
    review: Literal["none", "required"] = "none"
    review_to: tuple[str, ...] = ()  # addresses; in the environment, separated by commas

    # Tokens in unsubscribe links
    secret_key: str | None = None
    secret_key_file: str = "digest.key"  # noqa: S105 (a file name, not a secret)
    # keys that signed links before the current one (one per line, owner-only): they still
    # unsubscribe, and still recognise erased addresses; they never sign anything new
    retired_keys_file: str = "digest.retired-keys"

    # The public web endpoints (`digest serve`): subscribe, confirm, unsubscribe, archive
    confirm_token_days: int = Field(7, ge=1, le=90)  # how long a confirmation link works
    # at most one confirmation email per address in this many minutes (0: no limit)
    confirm_cooldown_minutes: int = Field(15, ge=0, le=10080)
    # at most this many confirmation emails per hour for one client (IPv4 address, IPv6 /64),
    # and for everyone together: a list-bombing script gets 429s, not our emails (0: no limit)
    confirm_limit_per_client: int = Field(10, ge=0)
    confirm_limit_total: int = Field(100, ge=0)
    preview_token: str | None = None  # staff preview at /preview: this password (HTTP Basic)
    preview_loopback: bool = False  # staff preview for direct requests from this machine only
    # what the consent log records about the client of a web action (subscribe, confirm,
    # unsubscribe): nothing, or its network (IPv4 /24, IPv6 /48) as a coarse marker
    consent_client: Literal["off", "network"] = "off"

    # What comes back (`digest inbox fetch`, `digest inbox receive`): bounces, complaints and
    # emailed unsubscribes. With bounce_address set, each delivery's envelope sender is
    # bounces+TOKEN@domain (VERP), so a report names its delivery and cannot be forged.
    bounce_address: str | None = None
    inbox_url: str | None = None  # imaps://user@host/INBOX, imap+starttls://…, a Maildir, mbox:…
    inbox_password: str | None = None
    inbox_password_file: str | None = None
    inbox_ca_file: str | None = None
    inbox_done_folder: str | None = None  # IMAP: processed reports are moved here
    inbox_oauth2_token_file: str | None = None  # XOAUTH2 (Microsoft 365, Google Workspace)
    inbox_oauth2_token_command: str | None = None  # prints an access token for XOAUTH2
    inbox_timeout: float = Field(60.0, gt=0)
    # GNU Mailman's bounce score: a permanent bounce adds bounce_hard_score, a temporary one
    # bounce_soft_score (at most one a day counts); at bounce_threshold the subscriber is
    # `bounced`; bounce_reset_days without a bounce and the score starts again from zero.
    bounce_hard_score: float = Field(1.0, ge=0, le=100)
    bounce_soft_score: float = Field(0.25, ge=0, le=100)
    bounce_threshold: float = Field(1.0, gt=0, le=1000)
    bounce_reset_days: int = Field(30, ge=1, le=3650)

    @field_validator("sections", mode="before")
    @classmethod
    def _split_sections(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: "Procedures, Training"
            value = value.split(",")
        if isinstance(value, list | tuple):
            cleaned = [" ".join(str(v).split()) for v in value]
            if any(len(v) > 100 for v in cleaned):
                raise ValueError("a section name is at most 100 characters")
            return [v for v in cleaned if v]
        return value

    @field_validator("from_address", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _ensure_single_line(value)
        _, addr = parseaddr(value)
        if "@" not in addr:
            raise ValueError(f"{value!r} is not an email address (expected 'Name <user@domain>')")
        from digest.addresses import normalise_address

        # special-use domains are checked with the setting that allows them (_check_special)
        ascii_addr = normalise_address(addr, allow_special_use=True)  # ValueError: the reason
        # An international domain in its ASCII (xn--) form, which every header and relay takes.
        return value if ascii_addr == addr else value.replace(addr, ascii_addr)

    @field_validator("review_to", mode="before")
    @classmethod
    def _check_review_to(cls, value: object) -> object:
        from digest.addresses import normalise_address

        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            return value  # pydantic says what is wrong with it
        # ValueError: the reason (special-use domains with allow_special_use_domains, below)
        return tuple(normalise_address(str(a), allow_special_use=True) for a in value)

    @model_validator(mode="after")
    def _check_review(self) -> Settings:
        if self.review == "required" and not self.review_to:
            raise ValueError(
                "review = 'required' needs review_to: the addresses that get the review copy "
                "(e.g. review_to = ['comms@example.org'])"
            )
        return self

    @model_validator(mode="after")
    def _check_special(self) -> Settings:
        from digest.addresses import special_use_suffix

        if self.allow_special_use_domains:
            return self
        for key, value in (("from", self.from_address), ("reply_to", self.reply_to),
                           ("unsubscribe_mailto", self.unsubscribe_mailto),
                           ("bounce_address", self.bounce_address),
                           *(("review_to", a) for a in self.review_to)):  # fmt: skip
            if value is None or value == type(self).model_fields["from_address"].default:
                continue
            domain = parseaddr(value)[1].rpartition("@")[2]
            special = special_use_suffix(domain)
            if special:
                raise ValueError(
                    f"{key}: {domain} is a special-use name (.{special}) that public mail cannot "
                    "reach; set allow_special_use_domains = true for an intranet or staging set-up"
                )
        return self

    @field_validator(*_BLANK_IS_UNSET, mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("bounce_address")
    @classmethod
    def _check_bounce_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _ensure_single_line(value)
        from digest.addresses import normalise_address
        from digest.inbound.verp import check_bounce_address

        # special-use domains: checked with the setting that allows them (_check_special)
        normalise_address(parseaddr(value)[1], allow_special_use=True)  # ValueError: why
        return check_bounce_address(value)

    @field_validator("inbox_url")
    @classmethod
    def _check_inbox_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from digest.inbound.spec import parse_source

        parse_source(value)  # raises ValueError with the reason
        return value

    @field_validator(
        "name", "organisation", "subject", "list_id", "footer_text", "dkim_domain",
        "dkim_selector", "inbox_done_folder", "inbox_oauth2_token_command",
    )  # fmt: skip
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        if value is not None:
            _ensure_single_line(value)
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL, e.g. https://news.example.org")
        if any(c in value for c in " \"'<>\r\n\t") or not value.isprintable():
            raise ValueError(f"{value!r} has spaces, quotes or control characters")
        if not parts.hostname.isascii():
            # An international domain name goes into links and headers in its xn-- form.
            import idna

            try:
                host = idna.encode(parts.hostname, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise ValueError(
                    f"{value!r}: {parts.hostname} is not a valid domain: {exc}"
                ) from None
            netloc = host + (f":{parts.port}" if parts.port else "")
            value = parts._replace(netloc=netloc).geturl()
        if not value.isascii():
            from urllib.parse import quote

            value = quote(value, safe=":/?#[]@!$&'()*+,;=%~")
        return value.rstrip("/")

    @field_validator("logo_url")
    @classmethod
    def _check_logo_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc or any(c in value for c in " \"'<>\r\n"):
            raise ValueError(f"{value!r} is not an https URL, e.g. https://example.org/logo.png")
        return value

    @field_validator("accent_colour")
    @classmethod
    def _check_colour(cls, value: str) -> str:
        if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", value):
            raise ValueError(f"{value!r} is not a hex colour, e.g. #1f3a5f")
        return value.lower()

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*", value):
            raise ValueError(f"{value!r} is not a language tag, e.g. en, cy or en-GB")
        return value

    @model_validator(mode="after")
    def _check_dkim(self) -> Settings:
        dkim = (self.dkim_domain, self.dkim_selector, self.dkim_private_key_file)
        if any(dkim) and not all(dkim):
            raise ValueError(
                "DKIM needs dkim_domain, dkim_selector and dkim_private_key_file together"
            )
        return self

    @model_validator(mode="after")
    def _check_lease(self) -> Settings:
        # The main loop renews its leases every lease_seconds/3 whatever the SMTP server does;
        # a lease must still outlast two whole reply waits, so that a worker busy on a slow
        # server can never have its rows taken by another while it is working.
        if self.lease_seconds < 2 * self.smtp_timeout:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be at least twice smtp_timeout "
                f"({self.smtp_timeout:g}): set lease_seconds to {2 * self.smtp_timeout:g} or more"
            )
        return self

    @field_validator("frequencies", "topics", mode="before")
    @classmethod
    def _list_or_words(cls, value: object) -> object:
        # DIGEST_FREQUENCIES=weekly,daily from the environment; a TOML list as it is
        if isinstance(value, str):
            return tuple(w.strip() for w in value.split(",") if w.strip())
        return value

    @field_validator("frequencies", "topics")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one, or leave the setting out")
        keys = [" ".join(v.split()).casefold() for v in value]
        if len(set(keys)) != len(keys) or not all(keys):
            raise ValueError("each must be named once, and not be empty")
        return tuple(" ".join(v.split()) for v in value)

    @property
    def offered_frequencies(self) -> tuple[str, ...]:
        """The frequencies subscribers may choose, the default first."""
        return self.frequencies or (self.schedule,)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}, e.g. Europe/London or UTC") from None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str) -> str:
        parse_smtp_url(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    # Derived values

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def smtp(self) -> SmtpConfig:
        cfg = parse_smtp_url(self.smtp_url)
        cfg.password = self.smtp_password or read_secret_file(
            self.smtp_password_file, "smtp_password_file"
        )
        cfg.ca_file = self.smtp_ca_file
        cfg.timeout = self.smtp_timeout
        cfg.transaction_seconds = self.smtp_transaction_seconds
        cfg.final_reply_seconds = self.smtp_final_reply_seconds
        if cfg.user and not cfg.password:
            raise ConfigError(
                f"smtp_url names the user {cfg.user!r} but no password is set",
                hint="Set DIGEST_SMTP_PASSWORD or smtp_password_file.",
            )
        return cfg

    @property
    def from_domain(self) -> str:
        return parseaddr(self.from_address)[1].rpartition("@")[2].lower()

    def inbox_secret(self) -> str | None:
        """The IMAP password (DIGEST_INBOX_PASSWORD or inbox_password_file), if any."""
        return self.inbox_password or read_secret_file(
            self.inbox_password_file, "inbox_password_file"
        )

    def secret_key_bytes(self) -> bytes:
        """The key that signs links now; an error when none is configured or it is weak.

        DIGEST_SECRET_KEY wins over the key file (see `key_sources` for a warning when both
        exist and differ).
        """
        if self.secret_key:
            return check_key_strength(self.secret_key, "DIGEST_SECRET_KEY").encode()
        key = read_secret_file(self.secret_key_file, "secret_key_file", missing_ok=True)
        if key:
            return check_key_strength(key, self.secret_key_file).encode()
        raise ConfigError(
            "no secret key for signing unsubscribe links",
            hint=f"Run `digest init` to create {self.secret_key_file}, or set DIGEST_SECRET_KEY.",
        )

    def keyring(self) -> Keyring:
        """The signing key and the retired keys (`retired_keys_file`, one per line) that
        still verify unsubscribe links and suppression entries made with them."""
        retired = read_secret_file(self.retired_keys_file, "retired_keys_file", missing_ok=True)
        lines = [ln.strip() for ln in (retired or "").splitlines()]
        keys = tuple(ln.encode() for ln in lines if ln and not ln.startswith("#"))
        return Keyring(self.secret_key_bytes(), keys)


def normalise_database_url(value: str) -> str:
    """Accept a SQLAlchemy URL, or a plain file path meaning a SQLite database."""
    if "://" not in value:
        return f"sqlite:///{value}"
    scheme = value.split("://", 1)[0]
    if scheme in ("postgres", "postgresql"):
        # SQLAlchemy's default postgres driver is psycopg2; we ship psycopg 3.
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
        raise ValueError(f"{value!r}: only sqlite:/// and postgresql:// databases are supported")
    return value


def _ensure_single_line(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError("must be a single line")
