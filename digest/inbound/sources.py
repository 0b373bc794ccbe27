"""Where inbound mail is read from: a Maildir folder, an mbox file, or an IMAP mailbox.

Nothing is ever deleted. Maildir and mbox are only read. From IMAP, messages are fetched with
BODY.PEEK (so mail for a person stays unread); a processed report is flagged \\Seen and, when
`inbox_done_folder` is set, moved there (IMAP MOVE; a server without MOVE gets a copy). Only
unseen messages are read from IMAP: processed reports are seen.

Source names: `imaps://user@host[:993]/INBOX`, `imap+starttls://user@host[:143]/INBOX`,
`imap://user@127.0.0.1:port/INBOX` (plain, loopback only), `maildir:PATH`, `mbox:PATH`, or a
path (a directory is a Maildir, a file an mbox). The password never goes in the URL.
"""

from __future__ import annotations

import contextlib
import mailbox
import os
import shlex
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from digest.config import Settings
from digest.errors import ConfigError, DigestError, TemporaryFailure, UsageError
from digest.inbound.classify import MAX_MESSAGE_BYTES
from digest.inbound.spec import SourceSpec
from digest.secret_files import read_secret_file


@dataclass(frozen=True)
class Fetched:
    """One message of a source: its bytes, or None when it is too large to read."""

    ref: str
    raw: bytes | None
    size: int


class Mailbox(Protocol):
    display: str

    def messages(self) -> Iterator[Fetched]: ...

    def done(self, ref: str) -> None: ...

    def close(self) -> None: ...


class _ReadOnlyFile:
    """A mailbox on this machine, read and never changed: nothing to mark done or close."""

    def __init__(self, spec: SourceSpec) -> None:
        self.display = spec.display
        self.path = Path(spec.path)

    def done(self, ref: str) -> None:
        pass  # read only

    def close(self) -> None:
        pass


class MaildirSource(_ReadOnlyFile):
    """A Maildir (new/ and cur/), read only: not even the seen flag is changed."""

    def __init__(self, spec: SourceSpec) -> None:
        super().__init__(spec)
        self.root = self.path
        if not self.root.is_dir():
            raise UsageError(
                f"no mailbox at {self.root}: it is not a directory",
                hint="Give a Maildir folder (with cur/ and new/), mbox:FILE or an imaps:// URL.",
            )
        if not (self.root / "cur").is_dir() and not (self.root / "new").is_dir():
            raise UsageError(
                f"{self.root} is not a Maildir (it has no cur/ or new/ folder)",
                hint="Give the Maildir folder itself, e.g. ~/Maildir or ~/Maildir/.Bounces.",
            )

    def messages(self) -> Iterator[Fetched]:
        for sub in ("new", "cur"):
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.name.startswith(".") or not path.is_file():
                    continue
                try:
                    size = path.stat().st_size
                    raw = path.read_bytes() if size <= MAX_MESSAGE_BYTES else None
                except FileNotFoundError:
                    continue  # moved by a mail client meanwhile (new/ -> cur/): seen there
                except OSError as exc:
                    raise DigestError(f"cannot read {path}: {exc.strerror}") from None
                yield Fetched(f"{sub}/{path.name}", raw, size)


class MboxSource(_ReadOnlyFile):
    """An mbox file, read only."""

    def __init__(self, spec: SourceSpec) -> None:
        super().__init__(spec)
        if not self.path.is_file():
            raise UsageError(
                f"no mailbox at {self.path}: "
                + ("it is a directory" if self.path.is_dir() else "no such file"),
                hint="Give an mbox file, a Maildir folder or an imaps:// URL.",
            )
        try:
            with self.path.open("rb"):
                pass
        except OSError as exc:
            raise DigestError(f"cannot read {self.path}: {exc.strerror}") from None

    def messages(self) -> Iterator[Fetched]:
        box = mailbox.mbox(self.path, create=False)
        try:
            for key in box.iterkeys():
                raw = box.get_bytes(key)
                yield Fetched(
                    f"mbox:{key}", raw if len(raw) <= MAX_MESSAGE_BYTES else None, len(raw)
                )
        finally:
            box.close()


class ImapSource:
    """An IMAP mailbox through IMAPClient: TLS verified (inbox_ca_file for a private CA),
    a password or an XOAUTH2 access token."""

    def __init__(self, spec: SourceSpec, settings: Settings) -> None:
        from imapclient import IMAPClient
        from imapclient.exceptions import IMAPClientError, LoginError

        self.display = spec.display
        self.spec = spec
        self.done_folder = settings.inbox_done_folder
        where = f"{spec.host}:{spec.port}"
        try:
            context = ssl.create_default_context(cafile=settings.inbox_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"inbox_ca_file {settings.inbox_ca_file}: {exc}") from None
        token = oauth2_token(settings)
        password = None if token else settings.inbox_secret()
        if token is None and not password:
            raise ConfigError(
                f"no password for the mailbox {spec.display}",
                hint="Set DIGEST_INBOX_PASSWORD or inbox_password_file (or, for Microsoft 365 and "
                "Google Workspace, inbox_oauth2_token_command).",
            )
        client: Any = None
        try:
            client = IMAPClient(
                spec.host, port=spec.port, ssl=spec.security == "tls", ssl_context=context,
                timeout=settings.inbox_timeout,
            )  # fmt: skip
            if spec.security == "starttls":
                client.starttls(context)
            if token is not None:
                client.oauth2_login(spec.user, token)
            else:
                client.login(spec.user, password)
            self.client = client
            try:
                client.select_folder(spec.folder)
            except IMAPClientError as exc:
                raise DigestError(
                    f"{spec.display}: cannot open the folder {spec.folder!r}: {_said(exc)}",
                    hint="Check the folder at the end of inbox_url (INBOX by default).",
                ) from None
            if self.done_folder and not client.folder_exists(self.done_folder):
                raise DigestError(
                    f"inbox_done_folder {self.done_folder!r} does not exist on {where}",
                    hint="Create the folder in the mailbox, or unset inbox_done_folder.",
                )
            self.can_move = client.has_capability("MOVE")
        except ssl.SSLCertVerificationError as exc:
            _quietly_logout(client)
            raise DigestError(
                f"the TLS certificate of {spec.host} could not be verified: {exc.verify_message}",
                hint="For a private CA set inbox_ca_file to its certificate (PEM).",
            ) from None
        except LoginError as exc:
            _quietly_logout(client)
            how = "XOAUTH2 token" if token is not None else "login"
            raise ConfigError(
                f"{where} refused the {how} for {spec.user!r}: {_said(exc)}",
                hint="Check the user in inbox_url and DIGEST_INBOX_PASSWORD "
                "(or the token that inbox_oauth2_token_command prints).",
            ) from None
        except DigestError:
            _quietly_logout(client)
            raise
        except (OSError, IMAPClientError) as exc:
            _quietly_logout(client)
            raise TemporaryFailure(
                f"cannot read the mailbox at {where}: {_said(exc)}",
                hint="Try again later; nothing was changed.",
            ) from None

    def messages(self) -> Iterator[Fetched]:
        from imapclient.exceptions import IMAPClientError

        try:
            uids = self.client.search(["UNSEEN", "NOT", "DELETED"])
            for start in range(0, len(uids), 200):
                chunk = uids[start : start + 200]
                sizes = self.client.fetch(chunk, ["RFC822.SIZE"])
                for uid in chunk:
                    size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
                    if size > MAX_MESSAGE_BYTES:
                        yield Fetched(str(uid), None, size)
                        continue
                    data = self.client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {})
                    raw = data.get(b"BODY[]")
                    if raw is None:
                        continue  # expunged by someone else meanwhile
                    yield Fetched(str(uid), bytes(raw), len(raw))
        except (OSError, IMAPClientError) as exc:
            raise TemporaryFailure(
                f"{self.display}: the connection failed while reading: {_said(exc)}",
                hint="Try again later: what was processed stays processed, the rest is read then.",
            ) from None

    def done(self, ref: str) -> None:
        from imapclient.exceptions import IMAPClientError

        uid = int(ref)
        try:
            self.client.add_flags([uid], [b"\\Seen"])
            if self.done_folder:
                if self.can_move:
                    self.client.move([uid], self.done_folder)
                else:  # no MOVE: a copy, and the original stays (seen): nothing is deleted
                    self.client.copy([uid], self.done_folder)
        except (OSError, IMAPClientError) as exc:
            raise TemporaryFailure(
                f"{self.display}: could not mark message {uid} as processed: {_said(exc)}",
                hint="Try again later: it was recorded, so the next run only marks it.",
            ) from None

    def close(self) -> None:
        _quietly_logout(self.client)


def _said(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, socket.timeout):
        text = "timed out"
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return " ".join(text.split())[:300] or type(exc).__name__


def _quietly_logout(client: Any) -> None:
    if client is None:
        return
    try:
        client.logout()
    except Exception:  # closing a connection that already failed
        with contextlib.suppress(Exception):
            client.shutdown()


def oauth2_token(settings: Settings) -> str | None:
    """An XOAUTH2 access token: from inbox_oauth2_token_file, or printed by
    inbox_oauth2_token_command (run without a shell); None when neither is set."""
    if settings.inbox_oauth2_token_file:
        token = read_secret_file(settings.inbox_oauth2_token_file, "inbox_oauth2_token_file")
        if not token:
            raise ConfigError(
                f"inbox_oauth2_token_file {settings.inbox_oauth2_token_file} is empty"
            )
        return token
    command = settings.inbox_oauth2_token_command
    if not command:
        return None
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, timeout=60, check=False,
            env=os.environ.copy(),
        )  # fmt: skip
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"inbox_oauth2_token_command could not run: {exc}") from None
    token = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0 or not token:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise ConfigError(
            f"inbox_oauth2_token_command exited {done.returncode} without a token"
            + (f": {why[0][:200]}" if why else ""),
            hint="Run the command by hand: it must print an access token and exit 0.",
        )
    return token.splitlines()[0]


class open_mailbox:  # noqa: N801 (a context manager used like a function)
    """`with open_mailbox(spec, settings) as box:` — connected, closed on the way out."""

    def __init__(self, spec: SourceSpec, settings: Settings) -> None:
        self.box: Mailbox
        if spec.kind == "imap":
            self.box = ImapSource(spec, settings)
        elif spec.kind == "maildir":
            self.box = MaildirSource(spec)
        else:
            self.box = MboxSource(spec)

    def __enter__(self) -> Mailbox:
        return self.box

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.box.close()
