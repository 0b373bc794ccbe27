"""The confirmation email goes through the one composer: DKIM-signed when DKIM is configured,
`Auto-Submitted: auto-generated` (RFC 3834), a proper signature separator, wrapped text, and
paced by the one pacer. Real parts: a SQLite file, the web app, the aiosmtpd server."""

from __future__ import annotations

import threading
from pathlib import Path

import dkim
import pytest
from fastapi.testclient import TestClient

from digest.compose.dkim import load_signer
from digest.config import Settings
from digest.config_load import load_settings
from digest.db import Engine, session_scope
from digest.lifecycle import request_subscription
from digest.send.confirm import send_confirmations
from digest.send.mailer import SmtpSender
from digest.send.pacing import Pacer
from digest.web.app import create_app

from .helpers.keys import rsa_pem
from .helpers.smtp import SmtpServer


def _dkim_settings(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    path = workdir / "dkim.key"
    path.write_bytes(rsa_pem())
    path.chmod(0o600)
    monkeypatch.setenv("DIGEST_DKIM_DOMAIN", "partnership.example.org")
    monkeypatch.setenv("DIGEST_DKIM_SELECTOR", "news2026")
    monkeypatch.setenv("DIGEST_DKIM_PRIVATE_KEY_FILE", str(path))
    return load_settings().settings


def test_the_confirmation_email_is_dkim_signed_and_marked_auto_generated(
    env: dict[str, str], engine: Engine, smtp_server: SmtpServer, workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    settings = _dkim_settings(workdir, monkeypatch)
    with TestClient(create_app(settings, engine=engine)) as client:
        r = client.post("/subscribe", data={"email": "ana@example.net", "name": "Ana Jones"})
    assert r.status_code == 200
    smtp_server.wait_for(1)
    (received,) = smtp_server.messages
    assert received.data.startswith(b"DKIM-Signature: ")
    signer = load_signer(settings)
    assert signer is not None and signer.verify(received.data)
    record = signer.dns_record().encode()
    assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: record)
    msg = received.message
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe"] is None  # not list mail
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "\n-- \n" in text  # the signature separator, with its space (RFC 3676 §4.3)
    link_lines = [ln for ln in text.splitlines() if "/confirm/" in ln]
    assert len(link_lines) == 1
    assert all(len(ln) <= 72 for ln in text.splitlines() if ln not in link_lines)
    assert "Someone, hopefully you, asked to send Safeguarding News to ana@example.net." in (
        " ".join(text.split())
    )


def test_confirmations_of_an_import_wait_for_the_one_pacer(
    env: dict[str, str], engine: Engine, smtp_server: SmtpServer
) -> None:
    settings = load_settings().settings
    with session_scope(engine) as session:
        found = [
            request_subscription(session, settings, email=f"p{n}@example.net") for n in range(3)
        ]
        jobs = [job for job in found if job is not None]
    assert len(jobs) == 3
    t = [1000.0]
    pacer = Pacer(per_second=0, per_hour=720, clock=lambda: t[0])  # one every 5 s
    stop = threading.Event()
    stop.set()  # the pacer's waits return at once: its schedule is what is checked
    sender = SmtpSender(settings.smtp)
    try:
        results = send_confirmations(engine, settings, jobs, sender, pacer=pacer, stop=stop)
    finally:
        sender.close()
    assert [r.outcome for _, r in results] == ["sent"] * 3
    assert len(smtp_server.messages) == 3
    # three sends at the configured per-hour rate took three 5-second slots of the pacer
    assert pacer.next_slot == pytest.approx(1000.0 + 3 * 5.0)
