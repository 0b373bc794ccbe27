"""Settings: one typed object from defaults, `digest.toml` and `DIGEST_*` environment variables.

Precedence (last wins): built-in defaults < config file < environment < command-line options.
Secrets (SMTP password, secret key) come only from the environment or from a file that only
its owner can read; they are never printed.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from digest.addresses import is_loopback
from digest.errors import ConfigError

DEFAULT_CONFIG_FILE = "digest.toml"
ENV_PREFIX = "DIGEST_"
SECRET_KEYS = frozenset({"smtp_password", "secret_key", "preview_token", "inbox_password"})


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
    templates_dir: str | None = None
    language: str = "en"  # lang of the email's <html>; dir follows (rtl for ar, fa, he, ur…)

    # Branding of the email: a logo (https image), the accent colour, a line in the footer
    logo_url: str | None = None
    accent_colour: str = "#1f3a5f"
    footer_text: str = ""

    # DKIM signing (RFC 6376): all three, or none. The key file (PEM RSA, or an Ed25519 key) must
    # be readable by its owner only.
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key_file: str | None = None

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
    max_issue_age_hours: float = Field(24.0, gt=0)  # an older unfinished issue needs --force

    # Tokens in unsubscribe links
    secret_key: str | None = None
    secret_key_file: str = "digest.key"  # noqa: S105 (a file name, not a secret)

    # The public web endpoints (`digest serve`): subscribe, confirm, unsubscribe, archive
    confirm_token_days: int = Field(7, ge=1, le=90)  # how long a confirmation link works
    # at most one confirmation email per address in this many minutes (0: no limit)
    confirm_cooldown_minutes: int = Field(15, ge=0, le=10080)
    preview_token: str | None = None  # staff preview at /preview: this password (HTTP Basic)
    preview_loopback: bool = False  # staff preview for direct requests from this machine only

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

        ascii_addr = normalise_address(addr)  # raises ValueError with the reason
        # An international domain in its ASCII (xn--) form, which every header and relay takes.
        return value if ascii_addr == addr else value.replace(addr, ascii_addr)

    @field_validator("bounce_address")
    @classmethod
    def _check_bounce_address(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        _ensure_single_line(value)
        from digest.addresses import normalise_address
        from digest.inbound.verp import check_bounce_address

        normalise_address(parseaddr(value)[1])  # raises ValueError with the reason
        return check_bounce_address(value)

    @field_validator("inbox_url")
    @classmethod
    def _check_inbox_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from digest.inbound.spec import parse_source

        parse_source(value)  # raises ValueError with the reason
        return value

    @field_validator("inbox_done_folder", "inbox_oauth2_token_command")
    @classmethod
    def _one_line_or_none(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        _ensure_single_line(value)
        return value

    @field_validator("name", "organisation", "subject", "list_id")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        if value is not None:
            _ensure_single_line(value)
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
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
        if value is None or value == "":
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

    @field_validator("footer_text", "dkim_domain", "dkim_selector")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None:
            _ensure_single_line(value)
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
        cfg.password = self.smtp_password or _read_secret_file(
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
        return self.inbox_password or _read_secret_file(
            self.inbox_password_file, "inbox_password_file"
        )

    def secret_key_bytes(self) -> bytes:
        """The key that signs unsubscribe tokens; an error when none is configured."""
        if self.secret_key:
            return self.secret_key.encode()
        key = _read_secret_file(self.secret_key_file, "secret_key_file", missing_ok=True)
        if key:
            return key.encode()
        raise ConfigError(
            "no secret key for signing unsubscribe links",
            hint=f"Run `digest init` to create {self.secret_key_file}, or set DIGEST_SECRET_KEY.",
        )


@dataclass
class SmtpConfig:
    url: str
    security: Literal["plain", "starttls", "tls"]
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 30.0  # one read
    transaction_seconds: float = 120.0  # connecting and logging in, or one transaction up to "."
    final_reply_seconds: float = 600.0  # the reply to the final "."

    @property
    def display(self) -> str:
        """The URL without credentials, for messages."""
        scheme = {"plain": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[self.security]
        return f"{scheme}://{self.host}:{self.port}"


_SMTP_SCHEMES: dict[str, tuple[Literal["plain", "starttls", "tls"], int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}


def parse_smtp_url(url: str) -> SmtpConfig:
    """Parse smtp://, smtp+starttls:// or smtps:// URLs; raises ValueError on a bad one."""
    parts = urlsplit(url)
    if parts.scheme not in _SMTP_SCHEMES:
        raise ValueError(
            f"{url!r} must start with smtp://, smtp+starttls:// or smtps:// "
            "(e.g. smtp+starttls://user@mail.example.org:587)"
        )
    if parts.password is not None:
        raise ValueError(
            "do not put the password in smtp_url; set DIGEST_SMTP_PASSWORD or smtp_password_file"
        )
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host name")
    security, default_port = _SMTP_SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    user = unquote(parts.username) if parts.username else None
    if user and security == "plain" and not is_loopback(parts.hostname):
        raise ValueError(
            f"refusing to send credentials over a plain connection to {parts.hostname}; "
            "use smtp+starttls:// or smtps://"
        )
    return SmtpConfig(url=url, security=security, host=parts.hostname, port=port, user=user)


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


def _read_secret_file(path: str | None, setting: str, missing_ok: bool = False) -> str | None:
    if not path:
        return None
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ConfigError(f"{setting}: {path} does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{setting}: {path} can be read by other users",
            hint=f"Run `chmod 600 {path}`.",
        )
    return p.read_text(encoding="utf-8").strip() or None


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    sources: dict[str, str]  # setting key -> where its value came from
    config_path: Path | None


def _field_keys() -> dict[str, str]:
    """Map of digest.toml key -> model field name."""
    return {(f.alias or name): name for name, f in Settings.model_fields.items()}


def load_settings(
    config_path: str | Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> LoadedSettings:
    """Build the settings. `config_path` (or DIGEST_CONFIG) must exist when given explicitly."""
    env = dict(os.environ if environ is None else environ)
    keys = _field_keys()
    values: dict[str, Any] = {}
    sources: dict[str, str] = dict.fromkeys(keys, "default")

    explicit = config_path or env.get("DIGEST_CONFIG")
    path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
    loaded_path: Path | None = None
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        for key, value in data.items():
            if key not in keys:
                raise ConfigError(
                    f"{path}: unknown setting {key!r}",
                    hint="`digest config show` lists every setting.",
                )
            if key in SECRET_KEYS:
                raise ConfigError(
                    f"{path}: {key} must not be written in the config file",
                    hint=f"Set {ENV_PREFIX}{key.upper()} or {key}_file instead.",
                )
            values[key] = value
            sources[key] = str(path)
        loaded_path = path
    elif explicit:
        raise ConfigError(
            f"config file {path} does not exist", hint="Run `digest init` to create one."
        )

    for key in keys:
        env_name = ENV_PREFIX + key.upper()
        if env_name in env and env[env_name] != "":
            values[key] = env[env_name]
            sources[key] = f"env {env_name}"

    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = "command line"

    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise _config_error(exc, sources) from None
    return LoadedSettings(settings=settings, sources=sources, config_path=loaded_path)


def _config_error(exc: ValidationError, sources: dict[str, str]) -> ConfigError:
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a rule about several settings together
            lines.append(msg)
            continue
        key = str(err["loc"][0])
        where = sources.get(key, "")
        lines.append(f"setting {key!r} ({where}): {msg}" if where else f"{key}: {msg}")
    return ConfigError(
        "invalid settings: " + "; ".join(lines),
        hint="Fix digest.toml or the DIGEST_* environment variable named above.",
    )


def describe_settings(loaded: LoadedSettings) -> list[tuple[str, str, str]]:
    """(key, display value, source) for every setting, secrets redacted."""
    from sqlalchemy.engine import make_url

    rows = []
    dumped = loaded.settings.model_dump(by_alias=True)
    for key, value in dumped.items():
        source = loaded.sources.get(key, "default")
        if key in SECRET_KEYS:
            shown = "(set, hidden)" if value else "(not set)"
        elif key == "database_url":
            shown = make_url(value).render_as_string(hide_password=True)
        elif value is None:
            shown = "(not set)"
        else:
            shown = str(value)
        rows.append((key, shown, source))
    key_file = Path(loaded.settings.secret_key_file)
    if not loaded.settings.secret_key:
        rows.append(
            ("secret key", "(from file)" if key_file.exists() else "(missing)", str(key_file))
        )
    return rows
