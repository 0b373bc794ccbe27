"""The message of issue 7 as composed by MessageTemplate: every header parsed back with `email`,
the bodies, the unsubscribe link per recipient, header injection, long and dotted values, the
scrubbed golden message (tests/golden/issue7.eml), and agreement with EmailMessage.

Update the golden files on purpose with:  DIGEST_UPDATE_GOLDEN=1 make test"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from digest.compose.wire import MessageTemplate, Recipient
from digest.render import PLACEHOLDER_PREFERENCES, PLACEHOLDER_UNSUBSCRIBE, fill_links

from .helpers.render import MSG, golden, render_fixed


def _template(boundary: str | None = None) -> MessageTemplate:
    r = render_fixed()
    return MessageTemplate(
        settings=MSG, subject=r.subject, html_body=r.html, text_body=r.text,
        date=datetime(2026, 11, 27, 8, 0, tzinfo=UTC), boundary=boundary,
    )  # fmt: skip


def _recipient(n: int, name: str = "") -> Recipient:
    return Recipient(
        email=f"reader{n}@example.net",
        name=name,
        message_id=f"<digest.issue7.sub{n}@example.org>",
        unsubscribe_url=f"https://news.example.org/unsubscribe/sub{n}.SIGNATURE{n}",
        preferences_url=f"https://news.example.org/preferences/sub{n}.PREFS{n}",
    )


def _parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def test_message_headers_and_structure() -> None:
    data = _template().render(_recipient(1, "Zofia Kowalczyk-Łęcka"))
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert not any(line.startswith(b".") for line in data.split(b"\r\n"))  # safe after DATA
    msg = _parse(data)
    assert msg["From"] == "Safeguarding News <news@example.org>"
    assert msg["Reply-To"] == "Business Unit <unit@example.org>"
    assert msg["To"] == "Zofia Kowalczyk-Łęcka <reader1@example.net>"
    assert len(msg.get_all("To")) == 1 and msg["Cc"] is None
    assert msg["Subject"] == "Safeguarding News: 19 – 26 November 2026"
    assert msg["Date"] == "Fri, 27 Nov 2026 08:00:00 +0000"
    assert msg["Message-ID"] == "<digest.issue7.sub1@example.org>"
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == "Safeguarding News <safeguarding-news.example.org>"
    assert msg["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe/sub1.SIGNATURE1>, "
        "<mailto:news@example.org?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    text, html = (p.get_content() for p in parts)
    assert "https://news.example.org/unsubscribe/sub1.SIGNATURE1" in text
    assert 'href="https://news.example.org/unsubscribe/sub1.SIGNATURE1"' in html
    for body in (text, html):
        assert PLACEHOLDER_UNSUBSCRIBE not in body and "{{" not in body
        assert PLACEHOLDER_PREFERENCES not in body
    assert "Gwasanaethau Cymdeithasol, Łódź" in text


def test_bodies_decode_to_the_rendered_text() -> None:
    r = render_fixed()
    msg = _parse(_template().render(_recipient(2)))
    text, html = (p.get_content().replace("\r\n", "\n") for p in msg.iter_parts())
    url = "https://news.example.org/unsubscribe/sub2.SIGNATURE2"
    prefs = "https://news.example.org/preferences/sub2.PREFS2"
    assert text == fill_links(r.text, url, prefs)
    assert html.rstrip("\n") == fill_links(r.html, url, prefs).rstrip("\n")
    assert f'<a href="{prefs}" style="color:#1a5c9e">Choose what you receive</a>' in html
    assert f"Choose what you receive: {prefs}" in text


def test_unsubscribe_url_unique_per_recipient() -> None:
    template = _template()
    urls = set()
    for n in range(20):
        msg = _parse(template.render(_recipient(n)))
        urls.add(msg["List-Unsubscribe"].split(",")[0])
        assert f"sub{n}.SIGNATURE{n}" in msg.get_body(("plain",)).get_content()
    assert len(urls) == 20


def test_header_injection_is_impossible() -> None:
    template = MessageTemplate(
        settings=MSG,
        subject="Hello\r\nBcc: victim@example.org",
        html_body="<p>x</p>",
        text_body="x",
        date=datetime(2026, 11, 27, tzinfo=UTC),
    )
    data = template.render(_recipient(3, "Eve\r\nBcc: victim@example.org"))
    msg = _parse(data)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Hello Bcc: victim@example.org"
    assert b"\r\nBcc:" not in data


def test_long_and_dotted_values_survive_encoding() -> None:
    long_url = "https://news.example.org/unsubscribe/" + "a" * 150 + ".sig"
    template = MessageTemplate(
        settings=MSG, subject="s", date=datetime(2026, 11, 27, tzinfo=UTC),
        html_body=f"<p>.leading dot</p>\n.{PLACEHOLDER_UNSUBSCRIBE}\n" + "é" * 200,
        text_body=f".\n..two\n{PLACEHOLDER_UNSUBSCRIBE}.\nend",
    )  # fmt: skip
    r = Recipient("a@example.org", "", "<m@example.org>", long_url)
    data = template.render(r)
    assert not any(line.startswith(b".") for line in data.split(b"\r\n"))
    assert all(len(line) <= 76 for line in data.split(b"\r\n\r\n", 1)[1].split(b"\r\n"))
    text, html = (p.get_content().replace("\r\n", "\n") for p in _parse(data).iter_parts())
    assert text == f".\n..two\n{long_url}.\nend\n"
    assert f".{long_url}\n" in html and "é" * 200 in html


def test_golden_message_scrubbed() -> None:
    data = _template(boundary="=_digest_BOUNDARY").render(_recipient(1, "Ana Jones"))
    text = data.decode("ascii").replace("\r\n", "\n")
    text = re.sub(r"^Date: .*$", "Date: (scrubbed)", text, flags=re.M)
    golden("issue7.eml", text)


def test_same_result_as_building_with_email_message() -> None:
    """The prepared-bytes path and the standard library agree on every part and header."""
    r = render_fixed()
    rec = _recipient(4, "Ana Jones")
    url = rec.unsubscribe_url
    ref = EmailMessage()
    ref["From"] = MSG.from_address
    ref["Reply-To"] = MSG.reply_to
    ref["To"] = f"{rec.name} <{rec.email}>"
    ref["Subject"] = r.subject
    ref["Message-ID"] = rec.message_id
    ref["List-Id"] = MSG.list_id
    ref["List-Unsubscribe"] = f"<{url}>, <{MSG.mailto_unsubscribe}>"
    ref["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    ref.set_content(fill_links(r.text, url, rec.preferences_url))
    ref.add_alternative(fill_links(r.html, url, rec.preferences_url), subtype="html")
    ours = _parse(_template().render(rec))
    ref = _parse(ref.as_bytes(policy=policy.SMTP))
    for h in (
        "From",
        "Reply-To",
        "To",
        "Subject",
        "Message-ID",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ):
        assert str(ours[h]) == str(ref[h]), h
    for a, b in zip(ours.iter_parts(), ref.iter_parts(), strict=True):
        assert a.get_content_type() == b.get_content_type()
        assert a.get_content().replace("\r\n", "\n") == b.get_content().replace("\r\n", "\n")
