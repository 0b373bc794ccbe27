"""`digest demo`: the main job on embedded defaults, offline, with no configuration."""

from __future__ import annotations

import mailbox
from email import message_from_bytes, policy
from pathlib import Path


def test_demo_delivers_to_its_maildir_and_writes_a_preview(cli, workdir: Path) -> None:
    r = cli("demo", "--dir", "ws")
    assert r.exit_code == 0, r.output
    assert "Sent issue 1: 8 sent, 0 failed, 0 deferred" in r.stdout
    ws = workdir / "ws"
    box = mailbox.Maildir(ws / "maildir", create=False)
    keys = list(box.keys())  # noqa: SIM118 (iterating a Maildir yields messages, not keys)
    messages = [message_from_bytes(box.get_bytes(k), policy=policy.default) for k in keys]
    assert len(messages) == 8
    assert len({m["Delivered-To"] for m in messages}) == 8
    for m in messages:
        assert m["List-Unsubscribe"] and m["Message-ID"]
        assert "Still at Risk" in m.get_body(("plain",)).get_content()
    html = (ws / "preview" / "digest.html").read_text(encoding="utf-8")
    assert "Safeguarding Partnership News" in html and "trafficked children" in html
    assert f"Preview:   {ws / 'preview' / 'digest.html'}" in r.stdout
    assert f"Maildir:   {ws / 'maildir'} (8 messages)" in r.stdout
    # it can run again: the folder is made anew
    again = cli("demo", "--dir", "ws")
    assert again.exit_code == 0, again.output
    assert len(mailbox.Maildir(ws / "maildir", create=False)) == 8


def test_demo_ignores_the_users_configuration(cli, workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_URL", "smtp://127.0.0.1:1")
    monkeypatch.setenv("DIGEST_DATABASE_URL", "sqlite:////nonexistent/x.db")
    Path("digest.toml").write_text('smtp_url = "broken"\n')
    r = cli("demo", "--dir", "ws")
    assert r.exit_code == 0, r.output


def test_demo_will_not_touch_another_folder(cli, workdir: Path) -> None:
    (workdir / "mine").mkdir()
    (workdir / "mine" / "thesis.txt").write_text("precious")
    r = cli("demo", "--dir", "mine")
    assert r.exit_code == 1
    assert "exists and is not a digest demo folder; not touching it" in r.stderr
    assert (workdir / "mine" / "thesis.txt").read_text() == "precious"
