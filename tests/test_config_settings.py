"""Settings (config.py): defaults, file then environment then option, validation that names the
setting, SMTP URLs, secrets only where they belong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digest.config_load import load_settings
from digest.errors import ConfigError
from digest.smtp_url import parse_smtp_url


def test_defaults_without_a_config_file(workdir: Path) -> None:
    loaded = load_settings(environ={})
    assert loaded.config_path is None
    assert loaded.settings.database_url == "sqlite:///subscribers.db"
    assert loaded.sources["database_url"] == "default"


def test_file_then_environment_then_option(workdir: Path) -> None:
    Path("digest.toml").write_text('name = "From file"\nsmtp_url = "smtp://127.0.0.1:2525"\n')
    loaded = load_settings(
        environ={"DIGEST_NAME": "From env", "DIGEST_DATABASE_URL": "sqlite:///env.db"},
        overrides={"database_url": "cli.db"},
    )
    s = loaded.settings
    assert s.name == "From env"
    assert s.smtp_url == "smtp://127.0.0.1:2525"
    assert s.database_url == "sqlite:///cli.db"  # a plain path means a SQLite file
    assert loaded.sources["name"] == "env DIGEST_NAME"
    assert loaded.sources["smtp_url"] == "digest.toml"
    assert loaded.sources["database_url"] == "command line"


def test_fixed_environment_names(workdir: Path) -> None:
    env = {
        "DIGEST_DATABASE_URL": "postgresql://u@db.example.org/news",
        "DIGEST_SMTP_URL": "smtps://relay@mail.example.org",
        "DIGEST_SMTP_PASSWORD": "pw",
        "DIGEST_FROM": "News <news@example.org>",
        "DIGEST_BASE_URL": "https://news.example.org/",
        "DIGEST_SECRET_KEY": "k" * 20 + "0123456789abcdef",
    }
    s = load_settings(environ=env).settings
    assert s.database_url == "postgresql+psycopg://u@db.example.org/news"
    assert s.smtp.port == 465 and s.smtp.security == "tls" and s.smtp.password == "pw"
    assert s.from_address == "News <news@example.org>"
    assert s.base_url == "https://news.example.org"
    assert s.secret_key_bytes() == b"k" * 20 + b"0123456789abcdef"


def test_explicit_config_via_environment_must_exist(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="config file nowhere.toml does not exist"):
        load_settings(environ={"DIGEST_CONFIG": "nowhere.toml"})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'smtp_url = "http://x"',
            "setting 'smtp_url' (digest.toml): 'http://x' must start with smtp://",
        ),
        ('from = "not an address"', "setting 'from' (digest.toml)"),
        (
            'base_url = "news.example.org"',
            "setting 'base_url' (digest.toml): 'news.example.org' is not an http(s) URL",
        ),
        ('timezone = "Mars/Olympus"', "unknown time zone 'Mars/Olympus'"),
        ('smtp_password = "hunter2"', "smtp_password must not be written in the config file"),
        ('colour = "red"', "unknown setting 'colour'"),
        ("name = ", "is not valid TOML"),
        ('lookback_days = "many"', "setting 'lookback_days'"),
    ],
)
def test_invalid_settings_name_the_setting(workdir: Path, content: str, message: str) -> None:
    Path("digest.toml").write_text(content + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={})
    assert message in info.value.message
    assert "hunter2" not in info.value.message


def test_invalid_environment_value_names_the_variable(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"setting 'smtp_url' \(env DIGEST_SMTP_URL\)"):
        load_settings(environ={"DIGEST_SMTP_URL": "ftp://x"})


@pytest.mark.parametrize(
    ("url", "security", "port"),
    [
        ("smtp://127.0.0.1:2525", "plain", 2525),
        ("smtp://mail.example.org", "plain", 25),
        ("smtp+starttls://u@mail.example.org", "starttls", 587),
        ("smtps://u%40x@mail.example.org:4650", "tls", 4650),
    ],
)
def test_smtp_url_forms(url: str, security: str, port: int) -> None:
    cfg = parse_smtp_url(url)
    assert (cfg.security, cfg.port) == (security, port)


def test_smtp_url_user_is_percent_decoded() -> None:
    assert parse_smtp_url("smtps://u%40x@mail.example.org").user == "u@x"


def test_credentials_over_plain_connection_to_remote_host_refused() -> None:
    with pytest.raises(ValueError, match="refusing to send credentials over a plain connection"):
        parse_smtp_url("smtp://user@mail.example.org:25")
    assert parse_smtp_url("smtp://user@127.0.0.1:2525").user == "user"  # loopback is fine


def test_password_in_url_refused() -> None:
    with pytest.raises(ValueError, match="do not put the password in smtp_url"):
        parse_smtp_url("smtps://user:secret@mail.example.org")


def test_user_without_password_is_a_clear_error(workdir: Path) -> None:
    s = load_settings(environ={"DIGEST_SMTP_URL": "smtps://user@mail.example.org"}).settings
    with pytest.raises(ConfigError, match="no password is set"):
        _ = s.smtp


def test_secret_files_must_be_private(workdir: Path) -> None:
    Path("pw").write_text("secret\n")
    os.chmod("pw", 0o644)
    s = load_settings(
        environ={"DIGEST_SMTP_URL": "smtps://u@mail.example.org", "DIGEST_SMTP_PASSWORD_FILE": "pw"}
    ).settings
    with pytest.raises(ConfigError, match="can be read by other users"):
        _ = s.smtp
    os.chmod("pw", 0o600)
    assert s.smtp.password == "secret"


def test_missing_secret_key_is_explained(workdir: Path) -> None:
    s = load_settings(environ={}).settings
    with pytest.raises(ConfigError, match="no secret key") as info:
        s.secret_key_bytes()
    assert "digest init" in (info.value.hint or "")
