"""Reading the bounce mailbox: a real Dovecot (IMAPS, STARTTLS, XOAUTH2, a wrong password, a
certificate error, a done folder), Maildir and mbox read only, nothing ever deleted, mail for a
person left unread, and bad input counted or refused with a clear error."""

from __future__ import annotations

import hashlib
import mailbox
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.db import make_engine, upgrade
from digest.errors import ConfigError, DigestError, TemporaryFailure, UsageError
from digest.inbound.inbox import fetch_inbox
from digest.inbound.spec import parse_source
from digest.models import InboundKind

from .helpers import reports
from .helpers.dovecot import OAUTH_TOKEN, PASSWORD, Dovecot, start_dovecot
from .helpers.newsletter import FROM, SECRET
from .helpers.web import rows


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'inbound.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with start_dovecot() as server:
        yield server


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "from": FROM, "secret_key": SECRET, "timezone": "UTC",
        "bounce_address": reports.BOUNCE_ADDRESS,
    }  # fmt: skip
    base.update(kw)
    return Settings.model_validate(base)


def _status(engine: Engine) -> dict[str, str]:
    return dict(rows(engine, "SELECT email, status FROM subscriber"))


def _mixed_mail(engine: Engine) -> list[bytes]:
    """A permanent bounce, a complaint, a vacation reply, a human reply, an unsubscribe."""
    ana, bo, cy, dee, eve = reports.make_world(
        engine, [f"{n}@example.com" for n in ("ana", "bo", "cy", "dee", "eve")]
    )
    return [
        reports.gmail_dsn(ana),
        reports.arf_report(bo),
        reports.vacation_reply(cy, "rfc3834"),
        reports.human_reply(dee),
        reports.unsubscribe_mail(eve),
    ]


EXPECTED = {
    "ana@example.com": "bounced",
    "bo@example.com": "unsubscribed",
    "cy@example.com": "active",
    "dee@example.com": "active",
    "eve@example.com": "unsubscribed",
}
FIRST_LINE = (
    "5 read: 1 bounces (1 permanent, 0 temporary), 1 complaints, 1 unsubscribes, "
    "1 auto-replies ignored, 1 for a person, 0 already seen"
)


def _folder(client: Any, name: str) -> dict[int, tuple[bytes, tuple[bytes, ...]]]:
    client.select_folder(name)
    uids = client.search(["ALL"])
    data = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
    return {u: (bytes(d[b"BODY[]"]), tuple(d[b"FLAGS"])) for u, d in data.items()}


def test_imap_reports_are_acted_on_and_moved_mail_for_a_person_stays_unread(
    engine: Engine, dovecot: Dovecot
) -> None:
    client: Any = dovecot.client()
    for raw in _mixed_mail(engine):
        client.append("INBOX", raw)
    settings = _settings(
        inbox_url=dovecot.url(), inbox_password=PASSWORD, inbox_ca_file=str(dovecot.ca_file),
        inbox_done_folder="Done",
    )  # fmt: skip
    seen: list[str] = []
    summary = fetch_inbox(engine, settings, on_outcome=lambda where, o: seen.append(o.kind))
    assert summary.line() == FIRST_LINE
    assert _status(engine) == EXPECTED
    inbox, done = _folder(client, "INBOX"), _folder(client, "Done")
    assert len(inbox) + len(done) == 5  # nothing deleted
    [(body, flags)] = inbox.values()
    assert b"Could you add our training dates" in body and b"\\Seen" not in flags
    assert all(b"\\Seen" in f for _, f in done.values()) and len(done) == 4
    again = fetch_inbox(engine, settings)
    assert again.line() == (
        "1 read: 0 bounces (0 permanent, 0 temporary), 0 complaints, 0 unsubscribes, "
        "0 auto-replies ignored, 0 for a person, 1 already seen"
    )
    assert _folder(client, "INBOX").keys() == inbox.keys()
    client.logout()


def test_imap_starttls_without_done_folder_flags_reports_seen_in_place(
    engine: Engine, dovecot: Dovecot
) -> None:
    client: Any = dovecot.client()
    for raw in _mixed_mail(engine):
        client.append("INBOX", raw)
    settings = _settings(inbox_password=PASSWORD, inbox_ca_file=str(dovecot.ca_file))
    summary = fetch_inbox(engine, settings, [dovecot.url(starttls=True)])
    assert summary.line() == FIRST_LINE
    inbox = _folder(client, "INBOX")
    assert len(inbox) == 5
    assert sorted(b"\\Seen" in f for _, f in inbox.values()) == [False, True, True, True, True]
    client.logout()


@pytest.mark.parametrize("how", ["file", "command"])
def test_imap_xoauth2_with_a_token_from_a_file_or_a_command(
    engine: Engine, dovecot: Dovecot, tmp_path: Path, how: str
) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    url = dovecot.url(user="oauth@partnership.example.org")
    if how == "file":
        token_file = tmp_path / "token"
        token_file.write_text(OAUTH_TOKEN + "\n")
        token_file.chmod(0o600)
        auth: dict[str, Any] = {"inbox_oauth2_token_file": str(token_file)}
    else:
        script = tmp_path / "token.py"
        script.write_text(f"print({OAUTH_TOKEN!r})\n")
        auth = {"inbox_oauth2_token_command": f"{sys.executable} {script}"}
    settings = _settings(inbox_url=url, inbox_ca_file=str(dovecot.ca_file), **auth)
    import ssl

    from imapclient import IMAPClient  # the oauth user's own mailbox, set up over XOAUTH2

    c = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=ssl.create_default_context(
        cafile=str(dovecot.ca_file)))  # fmt: skip
    c.oauth2_login("oauth@partnership.example.org", OAUTH_TOKEN)
    c.append("INBOX", reports.gmail_dsn(ana))
    c.logout()
    summary = fetch_inbox(engine, settings)
    assert summary.count(InboundKind.bounce) == 1
    assert _status(engine) == {"ana@example.com": "bounced"}


def test_imap_failing_token_command_is_a_clear_config_error(
    engine: Engine, dovecot: Dovecot
) -> None:
    settings = _settings(
        inbox_url=dovecot.url(), inbox_ca_file=str(dovecot.ca_file),
        inbox_oauth2_token_command=f"{sys.executable} -c \"import sys; sys.exit('no refresh token')\"",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="exited 1 without a token: no refresh token"):
        fetch_inbox(engine, settings)


def test_imap_wrong_password_is_refused_clearly_and_changes_nothing(
    engine: Engine, dovecot: Dovecot
) -> None:
    client: Any = dovecot.client()
    for raw in _mixed_mail(engine):
        client.append("INBOX", raw)
    settings = _settings(
        inbox_url=dovecot.url(), inbox_password="wrong", inbox_ca_file=str(dovecot.ca_file)
    )
    with pytest.raises(ConfigError, match="refused the login for 'bounces@partnership") as exc:
        fetch_inbox(engine, settings)
    assert "DIGEST_INBOX_PASSWORD" in (exc.value.hint or "")
    assert "wrong" not in exc.value.message
    assert set(_status(engine).values()) == {"active"}
    assert all(b"\\Seen" not in f for _, f in _folder(client, "INBOX").values())
    client.logout()


def test_imap_certificate_error_names_the_ca_file_setting(engine: Engine, dovecot: Dovecot) -> None:
    settings = _settings(inbox_url=dovecot.url(), inbox_password=PASSWORD)  # no inbox_ca_file
    with pytest.raises(DigestError, match="certificate of 127.0.0.1 could not be verified") as exc:
        fetch_inbox(engine, settings)
    assert "inbox_ca_file" in (exc.value.hint or "")


def test_imap_server_not_there_is_a_temporary_failure(engine: Engine) -> None:
    from digest.demo import free_port

    settings = _settings(
        inbox_url=f"imaps://u@127.0.0.1:{free_port()}/INBOX", inbox_password=PASSWORD
    )
    with pytest.raises(TemporaryFailure, match="cannot read the mailbox at 127.0.0.1"):
        fetch_inbox(engine, settings)


def test_imap_missing_done_folder_is_refused_before_anything_is_read(
    engine: Engine, dovecot: Dovecot
) -> None:
    settings = _settings(
        inbox_url=dovecot.url(), inbox_password=PASSWORD, inbox_ca_file=str(dovecot.ca_file),
        inbox_done_folder="Procesed",
    )  # fmt: skip
    with pytest.raises(DigestError, match="inbox_done_folder 'Procesed' does not exist"):
        fetch_inbox(engine, settings)


def _tree(root: Path) -> dict[str, tuple[str, float]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _maildir(path: Path, messages: list[bytes]) -> None:
    box = mailbox.Maildir(path, create=True)
    for i, raw in enumerate(messages):
        key = box.add(raw)
        if i % 2:  # half of them already read by a mail client (in cur/)
            msg = box[key]
            msg.set_subdir("cur")
            msg.add_flag("S")
            box[key] = msg
    box.close()


def test_maildir_is_read_only_and_fetching_twice_changes_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    _maildir(tmp_path / "Maildir", _mixed_mail(engine))
    before = _tree(tmp_path / "Maildir")
    summary = fetch_inbox(engine, _settings(), [str(tmp_path / "Maildir")])
    assert summary.line() == FIRST_LINE
    assert _status(engine) == EXPECTED
    again = fetch_inbox(engine, _settings(), [f"maildir:{tmp_path / 'Maildir'}"])
    assert again.already_seen == 5 and len(again.outcomes) == 5
    assert _tree(tmp_path / "Maildir") == before
    assert _status(engine) == EXPECTED


def test_mbox_is_read_only(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    box = mailbox.mbox(tmp_path / "mail" / "bounces.mbox")
    for raw in _mixed_mail(engine):
        box.add(raw)
    box.close()
    before = _tree(tmp_path / "mail")
    summary = fetch_inbox(engine, _settings(), [f"mbox:{tmp_path / 'mail' / 'bounces.mbox'}"])
    assert summary.line() == FIRST_LINE
    assert (
        fetch_inbox(engine, _settings(), [str(tmp_path / "mail" / "bounces.mbox")]).already_seen
        == 5
    )
    assert _tree(tmp_path / "mail") == before
    assert _status(engine) == EXPECTED


def test_bad_input_is_counted_for_a_person_next_to_a_real_bounce(
    engine: Engine, tmp_path: Path
) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    messages = [
        reports.gmail_dsn(ana)[:900],  # truncated in its first part
        os.urandom(20000),  # binary junk
        b"Subject: a big one\r\n\r\n" + b"x" * (30 * 1024 * 1024),  # 30 MB
        reports.office365_dsn(ana),  # and a real bounce after them
    ]
    root = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    for i, raw in enumerate(messages):
        (root / "new" / f"{i}.host").write_bytes(raw)
    summary = fetch_inbox(engine, _settings(), [str(root)])
    kinds = [o.kind for o in summary.outcomes]
    assert kinds[3] == "bounce" and kinds[2] == "person"
    assert "too large" in summary.outcomes[2].detail
    assert set(kinds[:2]) <= {"person", "bounce", "auto_reply"}
    assert _status(engine) == {"ana@example.com": "bounced"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nowhere", "no mailbox at"),
        ("mbox:nowhere.mbox", "no mailbox at"),
        ("plainfolder", "is not a Maildir"),
    ],
)
def test_a_mailbox_that_is_not_there_is_a_clear_error(
    engine: Engine, tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "plainfolder").mkdir()
    with pytest.raises(UsageError, match=message):
        fetch_inbox(engine, _settings(), [str(tmp_path / name) if ":" not in name else
                                          f"mbox:{tmp_path / 'nowhere.mbox'}"])  # fmt: skip
    assert rows(engine, "SELECT COUNT(*) FROM inbound_message") == [(0,)]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("imaps://u:secret@mail.example.org/INBOX", "do not put the password"),
        ("imap://u@mail.example.org/INBOX", "plain connection"),
        ("imaps://mail.example.org/INBOX", "names no user"),
        ("pop3://u@mail.example.org", "a mailbox is imaps://"),
    ],
)
def test_bad_mailbox_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_source(url)
    with pytest.raises(ConfigError, match=message):
        from digest.config import load_settings

        load_settings(environ={"DIGEST_INBOX_URL": url})


def test_imap_url_parts() -> None:
    spec = parse_source("imap+starttls://bounces%40example.org@mail.example.org/Bounces/2026")
    assert (spec.user, spec.host, spec.port, spec.folder, spec.security) == (
        "bounces@example.org", "mail.example.org", 143, "Bounces/2026", "starttls"
    )  # fmt: skip
    assert "secret" not in spec.display


def test_imap_a_30_mb_message_is_left_unread_for_a_person(engine: Engine, dovecot: Dovecot) -> None:
    [ana] = reports.make_world(engine, ["ana@example.com"])
    client: Any = dovecot.client()
    client.append("INBOX", b"Subject: big\r\nMessage-ID: <big@x>\r\n\r\n" + b"x" * (30 << 20))
    client.append("INBOX", reports.gmail_dsn(ana))
    settings = _settings(
        inbox_url=dovecot.url(), inbox_password=PASSWORD, inbox_ca_file=str(dovecot.ca_file)
    )
    summary = fetch_inbox(engine, settings)
    assert [o.kind for o in summary.outcomes] == ["person", "bounce"]
    assert "30 MB: too large" in summary.outcomes[0].detail
    flags = [f for _, f in _folder(client, "INBOX").values()]
    assert [b"\\Seen" in f for f in flags] == [False, True]
    client.logout()


def test_cli_imap_errors_are_one_clear_line_and_an_exit_code(
    env: dict[str, str], cli: Any, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_INBOX_URL", dovecot.url())
    monkeypatch.setenv("DIGEST_INBOX_PASSWORD", "wrong")
    monkeypatch.setenv("DIGEST_INBOX_CA_FILE", str(dovecot.ca_file))
    r = cli("inbox", "fetch")
    assert r.exit_code == 3
    assert r.stderr.startswith("Error: 127.0.0.1:") and "refused the login" in r.stderr
    assert "Traceback" not in r.output and "wrong" not in r.output
    monkeypatch.delenv("DIGEST_INBOX_CA_FILE")
    r = cli("inbox", "fetch")
    assert r.exit_code == 1 and "could not be verified" in r.stderr and "inbox_ca_file" in r.stderr
    from digest.demo import free_port

    monkeypatch.setenv("DIGEST_INBOX_URL", f"imaps://u@127.0.0.1:{free_port()}/INBOX")
    r = cli("inbox", "fetch")
    assert r.exit_code == 75 and "cannot read the mailbox" in r.stderr
