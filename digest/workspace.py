"""`digest init`: the starter config file, the secret key file and the database.

Each is made only when missing (the database is upgraded in place), so init is safe to re-run.
`init_workspace` yields one step at a time, so the command can say what was done before a
later step fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from digest.config import Settings
from digest.config_load import DEFAULT_CONFIG_FILE, load_settings
from digest.db import explain_database_error, make_engine, session_scope, sqlite_path, upgrade
from digest.errors import DigestError
from digest.suppression import rekey_legacy_suppressions

STARTER_CONFIG = """\
# digest configuration. Every setting can also be set with a DIGEST_<NAME> environment variable
# (for example DIGEST_SMTP_URL), which wins over this file. `digest config show` prints the
# effective values. Secrets (the SMTP password, the secret key) never go in this file.

# The newsletter
name = "Weekly digest"
from = "Weekly digest <news@example.org>"     # one address on your organisation's domain
# reply_to = "Comms team <comms@example.org>"
# base_url = "https://news.example.org"        # public address of `digest serve`: unsubscribe and archive links
organisation = "Example Organisation"
postal_address = "1 Example Street, Exampletown, EX1 1EX"
# subject = "{{ name }}: {{ date_range }}"      # variables: name, date_range, number, count, top_title
# timezone = "Europe/London"
# lookback_days = 7                             # how far back the first issue reaches
# sections = ["Procedures", "Training"]         # the order of the sections; the others follow, A to Z
# list_id = "Weekly digest <weekly.example.org>"
# unsubscribe_mailto = "unsubscribe@example.org"
# templates_dir = "my-templates"                # your own email/digest.html and email/digest.txt
# logo_url = "https://example.org/logo.png"     # branding: an https image (alt text: the organisation)
# accent_colour = "#1f3a5f"                     # masthead and section rules; white text must stay readable
# footer_text = "A line for the footer."
# language = "en"                               # <html lang>; right-to-left for ar, fa, he, ur…
# DKIM signing: all three; the key file readable by its owner only (`digest check` shows the DNS record).
# dkim_domain = "example.org"
# dkim_selector = "digest2026"
# dkim_private_key_file = "/etc/digest/dkim.key"

# Storage: SQLite here, or postgresql+psycopg://user@host/dbname
# database_url = "sqlite:///subscribers.db"

# Sending: smtp://host:25, smtp+starttls://user@host:587 or smtps://user@host:465.
# The password comes from DIGEST_SMTP_PASSWORD or smtp_password_file (readable by its owner only).
smtp_url = "smtp://localhost:25"
# smtp_password_file = "/etc/digest/smtp-password"
# smtp_ca_file = "/etc/digest/private-ca.pem"
# smtp_timeout = 30
# send_rate = 0                                 # messages per second; 0 = as fast as the server takes
# send_rate_per_hour = 0                        # an hourly cap, spread evenly; 0 = none
# smtp_connections = 1                          # parallel SMTP connections (your relay's limit)
# retry_lifetime_hours = 72                     # how long temporary failures are retried
# retry_base_seconds = 60                       # first retry after this; doubles each time
# retry_wait_seconds = 300                      # how long one run waits for due retries
# smtp_down_seconds = 300                       # server unreachable this long: stop, exit 75
# lease_seconds = 60                            # a crashed worker's messages are re-sent after this

# The scheduled job (`digest send --scheduled`, from cron or a systemd timer)
# schedule = "weekly"                           # or "daily"; periods in `timezone`
# max_issue_age_hours = 24                      # an older unfinished issue is never sent late

# The key that signs unsubscribe links: DIGEST_SECRET_KEY, or this file (made by `digest init`).
# Use one or the other, not both. Old keys go in retired_keys_file (see README, "Secret keys").
# secret_key_file = "digest.key"
# retired_keys_file = "digest.retired-keys"

# Public web endpoints (`digest serve`): subscribe, confirm, unsubscribe, archive. Needs base_url.
# confirm_token_days = 7                        # how long a confirmation link works
# confirm_cooldown_minutes = 15                 # at most one confirmation email per address in this time
# confirm_limit_per_client = 10                 # confirmation emails an hour for one client (429 beyond)
# confirm_limit_total = 100                     # confirmation emails an hour from the web, in all
# consent_client = "off"                        # or "network": the consent log keeps the visitor's /24
# preview_loopback = false                      # /preview for requests from this machine (not via a proxy)
# Staff preview through a proxy: set DIGEST_PREVIEW_TOKEN; /preview then asks for it as a password.
"""


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    created: bool


@dataclass(frozen=True)
class SecretKey:
    path: Path | None  # None: the key comes from DIGEST_SECRET_KEY
    created: bool


@dataclass(frozen=True)
class Database:
    where: str  # the URL, password hidden
    before: str | None  # the schema revision before (None: there was no database)
    after: str


Step = ConfigFile | SecretKey | Database


def init_workspace(
    config_path: str | None = None, *, overrides: dict[str, Any] | None = None
) -> Iterator[Step]:
    """Make what is missing: the config file (then read it), the secret key, the database.

    `config_path` and `overrides` are what `load_settings` takes; without a path the file is
    DIGEST_CONFIG, then ./digest.toml.
    """
    path = Path(config_path or os.environ.get("DIGEST_CONFIG") or DEFAULT_CONFIG_FILE)
    created = not path.exists()
    if created:
        try:
            path.write_text(STARTER_CONFIG, encoding="utf-8")
        except OSError as exc:
            raise DigestError(f"cannot write {path}: {exc.strerror}") from None
    yield ConfigFile(path, created)
    settings = load_settings(config_path, overrides=overrides).settings
    yield _secret_key(settings)
    yield _database(settings)


def _secret_key(settings: Settings) -> SecretKey:
    if settings.secret_key:
        return SecretKey(None, created=False)
    path = Path(settings.secret_key_file)
    if path.exists():
        settings.secret_key_bytes()  # checks its permissions
        return SecretKey(path, created=False)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise DigestError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    return SecretKey(path, created=True)


def _database(settings: Settings) -> Database:
    engine = make_engine(settings.database_url)
    try:
        path = sqlite_path(settings.database_url)
        if path is not None and not path.parent.exists():
            raise DigestError(f"the folder {path.parent} does not exist", hint="Create it first.")
        keyring = settings.keyring()
        try:
            before, after = upgrade(engine, secret_key=keyring.current)
            with session_scope(engine) as session:  # rows an earlier upgrade left unkeyed
                rekey_legacy_suppressions(session, keyring)
        except (sa.exc.OperationalError, sa.exc.DatabaseError) as exc:
            known = explain_database_error(exc, settings.database_url)
            if known is not None:
                raise known from None
            raise DigestError(
                f"cannot create the database: {getattr(exc, 'orig', exc)}",
                hint="Check DIGEST_DATABASE_URL / --db.",
            ) from None
    finally:
        engine.dispose()
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    return Database(where, before, after)
