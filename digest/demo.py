"""`digest demo`: the whole weekly job on embedded defaults, offline, in one folder."""

from __future__ import annotations

import json
import mailbox
import secrets
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from digest.config import Settings
from digest.db import make_engine, session_scope, upgrade
from digest.errors import DigestError
from digest.models import utcnow
from digest.news.items import ItemInput, upsert_item
from digest.send.job import run_issue
from digest.send.plan import plan_send, start_issue
from digest.send.safe import preview_files
from digest.subscribers import import_subscribers

MARKER = ".digest-demo"


class MaildirHandler:
    """An aiosmtpd handler that delivers each message, byte for byte, into a Maildir."""

    def __init__(self, path: Path) -> None:
        self.maildir = mailbox.Maildir(path, create=True)
        self.lock = threading.Lock()
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            data = (
                f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {rcpt}\r\n".encode()
                + envelope.original_content
            )
            with self.lock:
                self.maildir.add(data)
                self.count += 1
        return "250 2.0.0 Delivered to the demo Maildir"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class DemoResult:
    preview_html: Path
    maildir: Path
    delivered: int
    database: Path
    sample_message: Path


def _data(name: str) -> Path:
    return Path(str(resources.files("digest") / "demo_data" / name))


def _prepare(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise DigestError(
                f"{folder} exists and is not a digest demo folder; not touching it",
                hint="Choose another folder with --dir.",
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by `digest demo`; deleted and re-made on each run\n")


def run_demo(folder: Path, echo: Callable[[str], None] = print) -> DemoResult:
    folder = folder.resolve()
    _prepare(folder)
    db_path = folder / "subscribers.db"
    maildir_path = folder / "maildir"
    handler = MaildirHandler(maildir_path)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = Settings.model_validate(
            {
                "name": "Safeguarding Partnership News",
                "from": "Safeguarding Partnership <news@safeguarding.example.org>",
                "reply_to": "Partnership business unit <business.unit@safeguarding.example.org>",
                "base_url": "http://127.0.0.1:8000",
                "organisation": "Example Safeguarding Children Partnership",
                "postal_address": "Civic Centre, 1 Market Street\nExampletown EX1 2AB",
                "database_url": f"sqlite:///{db_path}",
                "smtp_url": f"smtp://127.0.0.1:{port}",
                "secret_key": secrets.token_urlsafe(32),
            }
        )
        echo(f"Workspace {folder}")
        engine = make_engine(settings.database_url)
        upgrade(engine)
        echo(f"Created the database {db_path.name}")
        now = utcnow()
        with session_scope(engine) as session:
            report = import_subscribers(
                session, _data("subscribers.csv"), keyring=settings.keyring()
            )
            for rec in json.loads(_data("news.json").read_text(encoding="utf-8")):
                upsert_item(
                    session,
                    ItemInput(
                        title=rec["title"], url=rec["url"], summary=rec["summary"],
                        category=rec["category"], source="Safeguarding Partnership",
                        published=now - timedelta(days=rec["days_ago"], hours=3),
                    ),
                )  # fmt: skip
        echo(f"Imported {report.added} sample subscribers and the sample news items")
        echo(f"Started a local SMTP server on 127.0.0.1:{port}, delivering to {maildir_path.name}/")
        with session_scope(engine) as session:
            plan = plan_send(session, settings)
            assert plan is not None and plan.draft is not None
            paths = preview_files(settings, plan.draft, folder / "preview")
            echo(f"Preview: issue {plan.draft.number}, {plan.draft.rendered.subject!r}, "
                 f"{len(plan.draft.items)} items -> preview/digest.html")  # fmt: skip
            issue = start_issue(session, plan)
        outcome = run_issue(
            engine, settings, issue.id or 0, subject=issue.subject, html=issue.html,
            text=issue.text, issue_uid=issue.uid, domain=issue.message_id_domain,
            stop=threading.Event(), issue_number=issue.number,
        )  # fmt: skip
        engine.dispose()
        c = outcome.counts
        echo(f"Sent issue {outcome.issue_number}: {c['sent']} sent, {c['failed']} failed, "
             f"{c['deferred']} deferred")  # fmt: skip
    finally:
        controller.stop()
    keys = sorted(handler.maildir.keys())
    sample = maildir_path / "new" / keys[0] if keys else maildir_path
    return DemoResult(
        preview_html=paths["html"],
        maildir=maildir_path,
        delivered=handler.count,
        database=db_path,
        sample_message=sample,
    )
