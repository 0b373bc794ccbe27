"""The wire bytes of a digest message, prepared once per issue and personalised cheaply.

Everything that is the same for every recipient (headers, both bodies, their quoted-printable
encoding, CRLF line ends, dot-safety) is done once in `MessageTemplate`. Per recipient,
`render()` only joins prepared bytes with the few values that differ: To, Message-ID and the
unsubscribe link. Because no body line starts with "." (QP encodes it as =2E) and every line
ends in CRLF, the result can go straight after SMTP DATA without smtplib's rewriting.
"""

from __future__ import annotations

import base64
import html
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy, quoprimime
from email.utils import format_datetime
from typing import TYPE_CHECKING

from digest.render import PLACEHOLDER_PREFERENCES, PLACEHOLDER_UNSUBSCRIBE

if TYPE_CHECKING:
    from digest.compose.dkim import BodyPrefix, DkimSigner

_QP_LINE = 74  # leaves room to turn a leading "." into "=2E" within RFC 2045's 76
_CTRL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str
    message_id: str  # with angle brackets
    unsubscribe_url: str  # https link, or the mailto: link when there is no base URL
    envelope_from: str = ""  # SMTP MAIL FROM (the return path); not a header
    mailto_unsubscribe: str = ""  # this recipient's mailto: (with a token); '' for the issue's
    preferences_url: str = ""  # their "Choose what you receive" page (with base_url)


_LINKS = re.compile(f"({PLACEHOLDER_UNSUBSCRIBE}|{PLACEHOLDER_PREFERENCES})")


def header_text(value: str) -> str:
    """One line of header text: CR, LF and other control characters become spaces.

    Untrusted text (feed titles, names) must never start a new header (RFC 5322 §2.2).
    """
    if value.isprintable() and "  " not in value and value == value.strip():
        return value  # the common case: nothing to clean
    return " ".join(_CTRL.sub(" ", value).split())


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 encoded-words of UTF-8 for `text`: base64, at most 45 bytes of text each, so
    every word is at most 75 characters; a character is never split."""
    words, chunk = [], b""
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > 45:
            words.append(chunk)
            chunk = b""
        chunk += b
    if chunk or not words:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words]


def _plain(word: str) -> bool:
    """A word that can stand as it is: ASCII, printable, and not like an encoded-word (a
    reader would decode it: '=?utf-8?q?hi?=' must read back as itself, not as 'hi')."""
    return word.isascii() and word.isprintable() and "=?" not in word


def _fold_words(prefix: str, words: list[str]) -> bytes:
    """`prefix` and the words, one space apart, folded before any word that would take the
    line past 78 characters (RFC 5322 §2.1.1: only a single long word may run longer)."""
    parts, width = [prefix], len(prefix)
    for n, word in enumerate(words):
        if n and width + 1 + len(word) > 78:
            parts.append("\r\n")
            width = 0
        parts.append(" " + word)
        width += 1 + len(word)
    parts.append("\r\n")
    return "".join(parts).encode("ascii")


def _fold(name: str, value: str) -> bytes:
    """An unstructured header field (Subject, List-Id): words that are not plain ASCII are
    RFC 2047-encoded, a run of them together with the spaces between them (the space between
    two encoded-words is not shown), and the field is folded at 78; it ends in CRLF."""
    value = header_text(value)
    line = f"{name}: {value}"
    if line.isascii() and len(line) <= 78 and "=?" not in value:
        return line.encode("ascii") + b"\r\n"
    words: list[str] = []
    run: list[str] = []
    for token in value.split(" "):
        if _plain(token):
            if run:
                words += _encoded_words(" ".join(run))
                run = []
            words.append(token)
        else:
            run.append(token)
    if run:
        words += _encoded_words(" ".join(run))
    return _fold_words(f"{name}:", words)


def _address_field(name: str, value: str) -> bytes:
    """From and Reply-To ("Name <address>", from the settings), by the email package."""
    value = header_text(value)
    line = f"{name}: {value}"
    if line.isascii() and len(line) <= 78 and "=?" not in value:
        return line.encode("ascii") + b"\r\n"
    header = policy.SMTP.header_factory(name, value)
    return str(header.fold(policy=policy.SMTP)).encode("ascii")


_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")


def to_header(name: str, email: str) -> bytes:
    """The To field for one recipient, without the email package's header machinery, which
    costs ~0.5 ms for a name that needs encoding. Names are plain ASCII words, an RFC 5322
    quoted-string, or RFC 2047 encoded-words of UTF-8 (each at most 75 characters)."""
    name = header_text(name) if name else ""
    if not name:
        return f"To: {email}\r\n".encode("ascii")
    if _plain(name):
        if not _ATOMS.fullmatch(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        line = f"To: {name} <{email}>"
        if len(line) <= 78:
            return line.encode("ascii") + b"\r\n"
        # folding white space may stand between the words, inside quotes too (RFC 5322 §3.2.4)
        return _fold_words("To:", [*name.split(" "), f"<{email}>"])
    encoded = _encoded_words(name)
    line = "To: " + " ".join(encoded) + f" <{email}>"
    if len(encoded) == 1 and len(line) <= 78:
        return line.encode("ascii") + b"\r\n"
    return ("To: " + "\r\n ".join(encoded) + f"\r\n <{email}>\r\n").encode("ascii")


def _qp(text: str) -> bytes:
    """Quoted-printable (RFC 2045 §6.7) with CRLF line ends and no line starting with '.'."""
    # body_encode works on one character per byte: give it the UTF-8 bytes as latin-1 text.
    raw = text.encode("utf-8").decode("latin-1")
    encoded = quoprimime.body_encode(raw, maxlinelen=_QP_LINE, eol="\r\n")
    if "\n." in encoded or encoded.startswith("."):
        encoded = re.sub(r"(^|\n)\.", r"\1=2E", encoded)
    return encoded.encode("ascii")


def _qp_piece(text: str) -> bytes:
    """A piece that is followed by another piece: ends on a line boundary or a soft break."""
    if not text:
        return b""
    encoded = _qp(text)
    return encoded if text.endswith("\n") else encoded + b"=\r\n"


def _qp_value(value: str) -> bytes:
    """A per-recipient value (a link) as a piece: what `_qp_piece` makes, faster.

    A printable ASCII value without "=" or white space needs no encoding, only the soft line
    breaks quoprimime.body_encode would put in: lines of _QP_LINE - 1 characters while more
    than _QP_LINE are left. Anything else, or a line that would start with ".", goes through
    `_qp_piece` (tests/test_compose_wire.py checks the two agree)."""
    if value and value.isascii() and value.isprintable() and "=" not in value and " " not in value:
        if len(value) <= _QP_LINE:
            if value[:1] != ".":
                return value.encode("ascii") + b"=\r\n"
        else:
            step, start, lines = _QP_LINE - 1, 0, []
            while len(value) - start > _QP_LINE:
                lines.append(value[start : start + step])
                start += step
            lines.append(value[start:])
            if not any(line[:1] == "." for line in lines):
                return "=\r\n".join(lines).encode("ascii") + b"=\r\n"
    return _qp_piece(value)


def _link_piece(placeholder: str, escape: bool) -> Callable[[Recipient], bytes]:
    """The per-recipient value that fills one placeholder of a body."""
    if placeholder == PLACEHOLDER_PREFERENCES:
        if escape:
            return lambda r: _qp_value(html.escape(r.preferences_url))
        return lambda r: _qp_value(r.preferences_url)
    if escape:
        return lambda r: _qp_value(html.escape(r.unsubscribe_url))
    return lambda r: _qp_value(r.unsubscribe_url)


@dataclass(frozen=True)
class MessageSettings:
    from_address: str
    reply_to: str | None
    list_id: str  # "Name <slug.domain>"
    mailto_unsubscribe: str  # mailto:…?subject=unsubscribe
    message_id_domain: str


class MessageTemplate:
    """One issue's message with holes for the per-recipient values."""

    def __init__(
        self,
        *,
        settings: MessageSettings,
        subject: str,
        html_body: str,
        text_body: str,
        date: datetime,
        boundary: str | None = None,
        signer: DkimSigner | None = None,
        list_headers: bool = True,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`list_headers`: List-Id and List-Unsubscribe (a digest); off for a one-off email such
        as the confirmation. `extra_headers` follow Message-ID (e.g. Auto-Submitted)."""
        self.settings = settings
        self.list_headers = list_headers
        self.signer = signer  # DKIM: signs each finished message, once (see digest.dkim)
        self.subject = header_text(subject)
        # 16 hex digits keep the Content-Type line under 78 characters
        boundary = boundary or f"=_digest_{secrets.token_hex(8)}"
        # "=_" cannot occur in quoted-printable text, so the boundary never collides.
        self.boundary = boundary

        head = [_address_field("From", settings.from_address)]
        if settings.reply_to:
            head.append(_address_field("Reply-To", settings.reply_to))
        self._head_before_to = b"".join(head)
        self._head_after_to = _fold("Subject", self.subject) + _fold("Date", format_datetime(date))
        self._list_id = _fold("List-Id", settings.list_id) if list_headers else b""  # RFC 2919
        self._extra = b"".join(_fold(name, value) for name, value in extra_headers)
        self._mime = (
            b"MIME-Version: 1.0\r\n"
            + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'.encode()
            + b"\r\n"
        )
        part_head = (
            '--{b}\r\nContent-Type: text/{sub}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        # Body pieces: prepared bytes, with a slot for the recipient's unsubscribe link.
        self._text_pieces = self._split(text_body, escape=False)
        self._html_pieces = self._split(html_body, escape=True)
        self._text_head = part_head.format(b=boundary, sub="plain").encode()
        self._html_head = ("\r\n" + part_head.format(b=boundary, sub="html")).encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        # DKIM: the body's start that every recipient shares, hashed once
        self.body_prefix: BodyPrefix | None = None
        if signer is not None:
            shared = [self._text_head]
            for piece in self._text_pieces:
                if not isinstance(piece, bytes):
                    break
                shared.append(piece)
            self.body_prefix = signer.body_prefix(b"".join(shared))

    @staticmethod
    def _split(body: str, *, escape: bool) -> list[bytes | Callable[[Recipient], bytes]]:
        body = body.replace("\r\n", "\n")
        if not body.endswith("\n"):
            body += "\n"
        pieces: list[bytes | Callable[[Recipient], bytes]] = []
        # [text, placeholder, text, placeholder, …, text]
        split = _LINKS.split(body)
        parts, holes = split[::2], split[1::2]
        for i, part in enumerate(parts):
            if i:
                pieces.append(_link_piece(holes[i - 1], escape))
            encoded = _qp_piece(part) if i < len(parts) - 1 else _qp(part)
            if encoded:
                pieces.append(encoded)
        # The body ends with CRLF; the CRLF before the next boundary line is the delimiter's own.
        return pieces

    def _list_unsubscribe(self, r: Recipient) -> bytes:
        # RFC 2369 List-Unsubscribe, and RFC 8058 one-click when the link is https.
        mailto = r.mailto_unsubscribe or self.settings.mailto_unsubscribe
        if r.unsubscribe_url.startswith("https://"):
            return (
                f"List-Unsubscribe: <{header_text(r.unsubscribe_url)}>,\r\n <{mailto}>\r\n"
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            ).encode("ascii")
        if r.unsubscribe_url.startswith("http://"):
            return (
                f"List-Unsubscribe: <{header_text(r.unsubscribe_url)}>,\r\n <{mailto}>\r\n".encode()
            )
        return f"List-Unsubscribe: <{mailto}>\r\n".encode()

    def render(self, r: Recipient, *, sign: bool = True) -> bytes:
        """The complete message for one recipient: CRLF line ends, ready for SMTP DATA.
        `sign=False`: without its DKIM-Signature (digest.send.signers signs it elsewhere)."""
        out = [
            self._head_before_to,
            to_header(r.name, r.email),
            self._head_after_to,
            b"Message-ID: " + r.message_id.encode("ascii") + b"\r\n",
            self._list_id,
            self._list_unsubscribe(r) if self.list_headers else b"",
            self._extra,
            self._mime,
            self._text_head,
        ]
        for piece in self._text_pieces:
            out.append(piece if isinstance(piece, bytes) else piece(r))
        out.append(self._html_head)
        for piece in self._html_pieces:
            out.append(piece if isinstance(piece, bytes) else piece(r))
        out.append(self._tail)
        data = b"".join(out)
        if sign and self.signer is not None:
            return self.signer.sign(data, prefix=self.body_prefix)
        return data
