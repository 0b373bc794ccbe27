"""Settings through the CLI: `digest config show` hides secrets; an invalid configuration exits 3
without a traceback unless --verbose."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_config_show_redacts_secrets(cli, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "hunter2-password")
    monkeypatch.setenv("DIGEST_SECRET_KEY", "very-secret-key")
    monkeypatch.setenv("DIGEST_DATABASE_URL", "postgresql://app:dbpass@127.0.0.1/news")
    result = cli("config", "show")
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert "very-secret-key" not in result.output
    assert "dbpass" not in result.output
    assert "(set, hidden)" in result.output
    assert "env DIGEST_SMTP_PASSWORD" in result.output


def test_invalid_config_exits_3_without_traceback(cli, workdir: Path) -> None:
    Path("digest.toml").write_text('smtp_url = "smtp//broken"\n')
    result = cli("subscribers", "list")
    assert result.exit_code == 3
    assert "Error: invalid settings: setting 'smtp_url'" in result.stderr
    assert "Traceback" not in result.output


def test_verbose_shows_the_traceback(cli, workdir: Path) -> None:
    Path("digest.toml").write_text('smtp_url = "smtp//broken"\n')
    result = cli("--verbose", "subscribers", "list")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
