"""Secrets kept in files: read only when no other user can read them, with a clear error when
this user may not; and the strength rules for the signing key and the staff preview password."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from digest.errors import ConfigError

MIN_KEY_CHARS = 32


MIN_KEY_DISTINCT = 10


def check_key_strength(key: str, where: str) -> str:
    """`key` if it is long and varied enough to sign links; ConfigError otherwise."""
    if len(key) < MIN_KEY_CHARS or len(set(key)) < MIN_KEY_DISTINCT:
        raise ConfigError(
            f"the secret key from {where} is too weak ({len(key)} characters, "
            f"{len(set(key))} different): it needs at least {MIN_KEY_CHARS} characters "
            f"and {MIN_KEY_DISTINCT} different ones",
            hint="Make a new one with `openssl rand -base64 32` (or delete the key file and run "
            "`digest init`); put the old key in retired_keys_file so links already sent keep "
            "unsubscribing.",
        )
    return key


MIN_PASSWORD_CHARS = 16


MIN_PASSWORD_DISTINCT = 8


def check_preview_token(token: str) -> str:
    """The staff preview password, if it is strong enough to face the internet."""
    if len(token) < MIN_PASSWORD_CHARS or len(set(token)) < MIN_PASSWORD_DISTINCT:
        raise ConfigError(
            f"DIGEST_PREVIEW_TOKEN is too weak ({len(token)} characters, {len(set(token))} "
            f"different): the staff preview password needs at least {MIN_PASSWORD_CHARS} "
            f"characters and {MIN_PASSWORD_DISTINCT} different ones",
            hint="Make one with `openssl rand -base64 18`, or unset it and use preview_loopback.",
        )
    return token


def read_secret_file(path: str | None, setting: str, missing_ok: bool = False) -> str | None:
    if not path:
        return None
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ConfigError(f"{setting}: {path} does not exist") from None
    except PermissionError:
        raise permission_error(p, setting) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{setting}: {path} can be read by other users",
            hint=f"Run `chmod 600 {path}`.",
        )
    try:
        return p.read_text(encoding="utf-8").strip() or None
    except PermissionError:
        raise permission_error(p, setting) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{setting}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None


def current_user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def permission_error(path: Path, setting: str) -> ConfigError:
    """A clear error for a secret file this user may not read (e.g. made by root)."""
    try:
        import pwd

        owner = pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        owner = "another user"
    return ConfigError(
        f"{setting}: {path} cannot be read by the user {current_user()} (it belongs to {owner})",
        hint=f"Run digest as {owner}, or `chown {current_user()} {path}` (keep it chmod 600).",
    )
