"""Properties of the message bytes that digest.compose.wire.MessageTemplate produces, for
generated subjects, names, addresses, bodies and unsubscribe links (hypothesis).

What every message must be, whatever went in: CRLF line ends only (no bare CR or LF), no line
starting with "." (so it can follow SMTP DATA without dot-stuffing), quoted-printable lines of
at most 76 characters (RFC 2045 §6.7), header lines folded at 78 wherever they can be
(RFC 5322 §2.1.1: only a single unbreakable word may run longer), exactly one From, To,
Subject, Date and Message-ID, and a message that parses back (email, policy.default) to the
subject, To name and address, and text and HTML bodies that went in, the unsubscribe link in
place of its placeholder.

The @example cases are defects of wire.py that these properties found (a subject that looks
like an encoded-word, spaces lost or doubled by the email package's folder, an unfolded long
To name, an 81-character Content-Type line), pinned so that they are tried on every run.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from digest.compose import wire
from digest.compose.wire import MessageSettings, MessageTemplate, Recipient, header_text
from digest.render import PLACEHOLDER_UNSUBSCRIBE

from .helpers.render import MSG

# Modest and steady: no deadline (a busy machine is not a failure), and no example database
# written into the work tree.
PROPERTY = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
DATE = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
MSG_UTF8 = MessageSettings(
    from_address="Bwletin Diogelu – Cyngor Sir Ynys Môn <newyddion@example.org>",
    reply_to=None,
    list_id="Bwletin Diogelu <bwletin.example.org>",
    mailto_unsubscribe="mailto:newyddion@example.org?subject=unsubscribe",
    message_id_domain="example.org",
)

# Pieces that have broken mail before: line ends of every kind, NUL, dots at a line start,
# "=" (the QP escape), text that looks like an RFC 2047 encoded-word, emoji (with ZWJ and
# skin tone), right-to-left text and bidi controls, Unicode line separators, long words.
TRICKY = [
    "\r\n", "\n", "\r", "\x00", "\t", " ", "  ", ".", "..", "\n.", ".\n", "\n..\n", "=", "=\n",
    "=20", "=?utf-8?q?x?=", "From ", '"', "\\", "<", ">", ",", ";", ":", "(", ")", "@",
    "😀", "👩🏽‍💻", "🇬🇧", "שלום עולם", "مرحبا بالعالم", "\u202e", "\u200f", "\u2028", "\u0085",
    "\xa0", "é", "Łódź", "ß", "中文", "\ufeff", "x" * 80, "é" * 40, "a " * 50,
]  # fmt: skip
chars = st.characters(codec="utf-8")  # any Unicode scalar value: no lone surrogates


def texts(*extra: str, max_pieces: int = 30) -> st.SearchStrategy[str]:
    piece = st.one_of(st.text(chars, max_size=20), st.sampled_from(TRICKY + list(extra)))
    return st.lists(piece, max_size=max_pieces).map("".join)


subjects = st.one_of(texts(max_pieces=12), st.text(chars, min_size=60, max_size=300))
names = st.one_of(
    st.just(""),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120),  # ASCII
    texts(max_pieces=10),
    st.text(chars, min_size=40, max_size=200),
)
ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
local_parts = st.from_regex(rf"[{ATEXT}]{{1,20}}(\.[{ATEXT}]{{1,20}}){{0,2}}", fullmatch=True)
labels = st.from_regex(r"(xn--)?[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
addresses = st.builds(
    lambda local, domain, tld: f"{local}@{'.'.join(domain)}.{tld}",
    local_parts,
    st.lists(labels, min_size=1, max_size=3),
    st.sampled_from(["org", "net", "example", "co.uk"]),
)
URL_CHARS = "A-Za-z0-9._~!$&'()*+,;=:@%-"
urls = st.one_of(
    st.builds(
        lambda scheme, host, path, token: f"{scheme}://{host}{path}/unsubscribe/{token}",
        st.sampled_from(["https", "http"]),
        st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){1,3}(:[0-9]{2,5})?", fullmatch=True),
        st.from_regex(rf"(/[{URL_CHARS}]{{0,30}}){{0,3}}", fullmatch=True),
        st.from_regex(r"[0-9a-f]{32}\.[A-Za-z0-9_-]{22}", fullmatch=True),
    ),
    st.just(MSG.mailto_unsubscribe),  # no base URL: the mailto link stands in
)
# The text templates put the link on a line of its own or inside a sentence; the HTML one
# inside href="…" and as link text.
bodies = texts(PLACEHOLDER_UNSUBSCRIBE, max_pieces=30)


@dataclass(frozen=True)
class Case:
    settings: MessageSettings
    subject: str
    name: str
    email: str
    text: str
    html: str
    url: str

    def render(self) -> bytes:
        template = MessageTemplate(
            settings=self.settings, subject=self.subject, html_body=self.html,
            text_body=self.text, date=DATE,
        )  # fmt: skip
        return template.render(
            Recipient(self.email, self.name, "<digest.12.sub1@example.org>", self.url)
        )


def case_with(subject: st.SearchStrategy[str] = subjects) -> st.SearchStrategy[Case]:
    return st.builds(
        Case,
        settings=st.sampled_from([MSG, MSG_UTF8]),
        subject=subject,
        name=names,
        email=addresses,
        text=bodies,
        html=bodies,
        url=urls,
    )


cases = case_with()
ascii_subjects = st.lists(
    st.one_of(
        st.text(st.characters(max_codepoint=127), max_size=20),
        st.sampled_from([t for t in TRICKY if t.isascii()]),
    ),
    max_size=12,
).map("".join)


def parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def head_and_body(data: bytes) -> tuple[list[bytes], bytes]:
    head, body = data.split(b"\r\n\r\n", 1)
    return head.split(b"\r\n"), body


def header_fields(data: bytes) -> list[list[bytes]]:
    """Each header field as its physical lines (a field's continuation lines start with WSP)."""
    fields: list[list[bytes]] = []
    for line in head_and_body(data)[0]:
        if line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def qp_lines(data: bytes) -> list[bytes]:
    """The lines of both quoted-printable parts, between each part's header and boundary."""
    msg = parse(data)
    boundary = msg.get_boundary()
    assert boundary
    _, body = head_and_body(data)
    out: list[bytes] = []
    for part in body.split(b"--" + boundary.encode())[1:-1]:
        part_head, part_body = part.split(b"\r\n\r\n", 1)
        assert b"Content-Transfer-Encoding: quoted-printable" in part_head
        out += part_body.split(b"\r\n")
    return out


def lines_of(text: str) -> str:
    """Text with its line ends made one kind: a message has only CRLF, so a bare CR or LF that
    went in is a line break that comes out; which kind it was is not kept (RFC 5322 §2.3)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def sent_body(body: str, link: str) -> str:
    """What a body should read once sent: the link in place of its placeholder, one kind of line
    end, and a final line end (MIME parts end with one)."""
    out = lines_of(body.replace(PLACEHOLDER_UNSUBSCRIBE, link))
    return out if out.endswith("\n") else out + "\n"


# Transport: line ends, dots, line lengths ----------------------------------------------------


@PROPERTY
@given(cases)
def test_every_message_is_ready_for_smtp_data(case: Case) -> None:
    data = case.render()
    lines = data.split(b"\r\n")
    # CRLF line ends only: no bare CR or LF anywhere (RFC 5322 §2.3), nor NUL (QP writes =00)
    assert data.endswith(b"\r\n")
    bare = data.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare and b"\x00" not in data
    # no line starts with "." so no dot-stuffing is needed after DATA (RFC 5321 §4.5.2)
    assert not [line for line in lines if line.startswith(b".")]
    # quoted-printable lines at most 76 (RFC 2045 §6.7); any line at most 998 (RFC 5322 §2.1.1)
    assert not [line for line in qp_lines(data) if len(line) > 76]
    assert not [line for line in lines if len(line) > 998]


def _foldable_and_long(line: bytes, first: bool) -> bool:
    """A header line over 78 that could have been folded: it has a space or tab after its first
    word (after the field name and its first word, on a field's first line)."""
    if len(line) <= 78:
        return False
    return len(line.strip(b" \t").split()) > (2 if first else 1)


def _unfolded_lines(data: bytes, *, skip: tuple[bytes, ...] = ()) -> list[list[bytes]]:
    return [
        field
        for field in header_fields(data)
        if not field[0].startswith(skip)
        and any(_foldable_and_long(line, i == 0) for i, line in enumerate(field))
    ]


@PROPERTY
@given(cases)
def test_headers_from_the_input_are_folded_at_78(case: Case) -> None:
    assert not _unfolded_lines(case.render())


long_ascii_names = st.lists(
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12),
    min_size=8,
    max_size=20,
).map(" ".join)


@PROPERTY
@example(name="Ana Jones " * 10, email="reader1@example.net")
@given(name=long_ascii_names, email=addresses)
def test_to_with_a_long_ascii_name_is_folded_at_78(name: str, email: str) -> None:
    case = Case(MSG, "s", name, email, "t", "h", "https://news.example.org/unsubscribe/u.S")
    assert not _unfolded_lines(case.render())


@PROPERTY
@example(Case(MSG, "s", "", "reader1@example.net", "t", "h", MSG.mailto_unsubscribe))
@given(cases)
def test_mime_headers_are_folded_at_78(case: Case) -> None:
    assert not _unfolded_lines(case.render())


@PROPERTY
@given(cases)
def test_each_header_once_and_nothing_injected(case: Case) -> None:
    data = case.render()
    msg = parse(data)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id",
                 "List-Unsubscribe"):  # fmt: skip
        assert len(msg.get_all(name) or []) == 1, name
    fields = [f[0].split(b":", 1)[0].lower() for f in header_fields(data)]
    assert len(fields) == len(set(fields))  # no field twice, no Bcc or Cc smuggled in
    assert msg["Cc"] is None and msg["Bcc"] is None
    assert msg["Message-ID"] == "<digest.12.sub1@example.org>"
    assert msg["Date"] == "Fri, 27 Nov 2026 08:00:00 +0000"
    assert not msg.defects, msg.defects


# What the reader sees: it parses back to what went in --------------------------------------


@PROPERTY
@given(cases)
def test_bodies_parse_back_with_the_link_in_place(case: Case) -> None:
    msg = parse(case.render())
    assert msg.get_content_type() == "multipart/alternative"
    text, html_part = msg.iter_parts()
    assert (text.get_content_type(), html_part.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content_charset() == html_part.get_content_charset() == "utf-8"
    assert lines_of(text.get_content()) == sent_body(case.text, case.url)
    assert lines_of(html_part.get_content()) == sent_body(case.html, html.escape(case.url))


@PROPERTY
@given(cases)
def test_list_unsubscribe_carries_the_link(case: Case) -> None:
    msg = parse(case.render())
    links = re.findall(r"<([^>]*)>", str(msg["List-Unsubscribe"]))
    if case.url.startswith(("https://", "http://")):
        assert links == [case.url, case.settings.mailto_unsubscribe]  # RFC 2369
    else:
        assert links == [case.settings.mailto_unsubscribe]
    # RFC 8058 one-click only with an https link
    assert (msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click") == (
        case.url.startswith("https://")
    )


def _looks_encoded(value: str) -> bool:
    """Text that a reader takes for an RFC 2047 encoded-word, and decodes."""
    return "=?" in value


@PROPERTY
@given(cases)
def test_subject_keeps_every_character(case: Case) -> None:
    expected = header_text(case.subject)  # one line: control characters became spaces
    assume(not _looks_encoded(expected))  # test_subject_parses_back_exactly
    subject = parse(case.render())["Subject"]
    assert "\r" not in subject and "\n" not in subject
    assert "".join(subject.split()) == "".join(expected.split())  # spacing: see below


@PROPERTY
@given(case_with(subject=ascii_subjects))
def test_ascii_subject_parses_back_exactly(case: Case) -> None:
    expected = header_text(case.subject)
    assume(not _looks_encoded(expected))
    assert parse(case.render())["Subject"] == expected


CHINESE = "儿童 保护 会议 在 学校 举行 家长 老师 社会 工作者 参加 儿童 保护 会议 在"


def _subject(subject: str) -> Case:
    return Case(MSG, subject, "", "reader1@example.net", "t", "h", MSG.mailto_unsubscribe)


@PROPERTY
@example(_subject("=?utf-8?q?hi?="))
@example(_subject(CHINESE))
@example(_subject("0" * 58 + " \x80"))
@given(cases)
def test_subject_parses_back_exactly(case: Case) -> None:
    assert parse(case.render())["Subject"] == header_text(case.subject)


def _display_name(data: bytes) -> str:
    """The To name as a reader shows it. policy.default keeps the folding space between two
    adjacent encoded-words of a display name, against RFC 2047 §6.2 (the email package's own
    output reads back the same way), so an encoded name is read with email.header, which
    follows the RFC; other names with policy.default."""
    (field,) = [f for f in header_fields(data) if f[0].startswith(b"To:")]
    value = b" ".join(line.strip(b" \t") for line in field)[3:].decode("ascii").strip()
    phrase = value.rsplit("<", 1)[0].strip() if value.endswith(">") else ""
    if phrase.startswith("=?"):
        return str(make_header(decode_header(phrase)))
    return str(parse(data)["To"].addresses[0].display_name)


@PROPERTY
@given(cases)
def test_to_parses_back(case: Case) -> None:
    data = case.render()
    (address,) = parse(data)["To"].addresses
    assert address.addr_spec == case.email
    expected = header_text(case.name)
    assume(not _looks_encoded(expected))  # test_to_name_that_looks_encoded_parses_back
    assert _display_name(data) == expected


@PROPERTY
@example(name="=?utf-8?q?Eve?=")
@given(
    name=st.tuples(texts(max_pieces=3), texts(max_pieces=3)).map(
        lambda parts: f"{parts[0]} =?utf-8?q?Eve?= {parts[1]}"
    )
)
def test_to_name_that_looks_encoded_parses_back(name: str) -> None:
    case = Case(MSG, "s", name, "reader1@example.net", "t", "h", MSG.mailto_unsubscribe)
    assert _display_name(case.render()) == header_text(name)


# Speed (issue 11): the links are quoted-printable pieces made without quoprimime when they
# need no encoding; they must be exactly what the library path makes.

url_text = st.text(
    alphabet=st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:/?#[]@!$&'()*+,;%= \t.é"
    ),
    max_size=400,
).map(lambda s: s.replace("Z", "a" * 60))  # long runs too, past several line breaks


@PROPERTY
@given(value=url_text)
@example(value="." + "a" * 72 + "." + "b" * 100)  # a line that would start with "."
@example(value="a" * 73 + "." + "b" * 74)
@example(value="a" * 74)
@example(value="a" * 75)
@example(value="a" * 147)
@example(value="a" * 148)
def test_a_link_piece_is_what_the_library_makes(value: str) -> None:
    assert wire._qp_value(value) == wire._qp_piece(value)


def test_a_real_unsubscribe_link_takes_the_fast_path_and_matches() -> None:
    link = "https://news.partnership.example.org/unsubscribe/" + "ab12cd34_" + "f" * 32 + "_Z" * 11
    assert len(link) > 74  # past one line: the soft breaks are where body_encode puts them
    assert wire._qp_value(link) == wire._qp_piece(link)
