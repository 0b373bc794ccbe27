"""One item shape from untrusted input: plain-text titles, sanitised HTML, readable text."""

from __future__ import annotations

import hashlib
import re
import textwrap
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

import nh3

MAX_TITLE = 300
MAX_SUMMARY_HTML = 20_000

# What survives in a summary. No script/style/iframe/form/img/event handlers; links only to
# http(s) and mailto. nh3 (ammonia) parses like a browser, so broken markup cannot smuggle tags.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "em", "h3", "h4", "i", "li", "ol", "p",
    "pre", "strong", "sub", "sup", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}}
URL_SCHEMES = {"http", "https", "mailto"}
_WS = re.compile(r"\s+")


def clean_text(value: str, limit: int = MAX_TITLE) -> str:
    """Plain text on one line: tags removed, entities decoded, whitespace (CR/LF too) collapsed."""
    if "<" in value or "&" in value:
        value = html_to_text(sanitise_html(value), width=0)
    value = _WS.sub(" ", value).strip()
    if len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return value


def check_url(url: str, base: str | None = None) -> str:
    """An absolute http(s) URL (relative ones resolved against `base`); ValueError otherwise."""
    url = url.strip()
    if base:
        url = urljoin(base, url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http(s) link")
    if any(ch in url for ch in '\r\n\t <>"'):
        raise ValueError(f"{url!r} contains spaces or characters not allowed in a link")
    return urlunsplit(parts)


def sanitise_html(value: str, base_url: str | None = None) -> str:
    """An allow-listed fragment; relative links are made absolute against `base_url`."""
    if not value:
        return ""
    if "<" not in value:
        # Plain text: keep its paragraphs.
        paras = [p.strip() for p in re.split(r"\n\s*\n", value) if p.strip()]
        value = "".join(f"<p>{_escape(p)}</p>" for p in paras)
    cleaned = nh3.clean(
        value[: MAX_SUMMARY_HTML * 5],
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        attribute_filter=(
            lambda tag, attr, val: _absolute(val, base_url) if attr == "href" else val
        ),
        strip_comments=True,
    )
    return cleaned.strip()[:MAX_SUMMARY_HTML]


def _absolute(href: str, base_url: str | None) -> str | None:
    if base_url and not urlsplit(href).scheme:
        return urljoin(base_url, href)
    return href


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def item_key(url: str) -> str:
    """The stable key of an item added by hand or from a file: its link, minus any fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


def fallback_key(title: str, published: str) -> str:
    return (
        "sha1:" + hashlib.sha1(f"{title}\n{published}".encode(), usedforsecurity=False).hexdigest()
    )


class _TextWriter(HTMLParser):
    """Turns the sanitised fragment into text for people: paragraphs, bullets, 'text <url>'."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.lists: list[list[int]] = []  # one entry per open list: [counter] or [-1] for ul
        self.href: str | None = None
        self.link_text: list[str] = []

    def _flush(self) -> None:
        text = _WS.sub(" ", "".join(self.current)).strip()
        if text:
            self.blocks.append(text)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("p", "h3", "h4", "blockquote", "pre", "ul", "ol"):
            self._flush()
        if tag == "ul":
            self.lists.append([-1])
        elif tag == "ol":
            self.lists.append([0])
        elif tag == "li":
            self._flush()
            marker = "•"
            if self.lists and self.lists[-1][0] >= 0:
                self.lists[-1][0] += 1
                marker = f"{self.lists[-1][0]}."
            self.current.append("\0" + marker + " ")
        elif tag == "br":
            self._flush()
        elif tag == "a":
            self.href = dict(attrs).get("href")
            self.link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.href is not None:
            text = _WS.sub(" ", "".join(self.link_text)).strip()
            if self.href.startswith("mailto:") and text == self.href[7:]:
                pass
            elif text != self.href:
                self.current.append(f" <{self.href}>")
            self.href = None
        elif tag in ("ul", "ol") and self.lists:
            self._flush()
            self.lists.pop()
        elif tag in ("p", "li", "h3", "h4", "blockquote", "pre"):
            self._flush()

    def handle_data(self, data: str) -> None:
        self.current.append(data)
        if self.href is not None:
            self.link_text.append(data)


def html_to_text(fragment: str, width: int = 72, indent: str = "") -> str:
    """Readable text from a sanitised fragment, wrapped at `width` (0: one line per block)."""
    writer = _TextWriter()
    writer.feed(fragment)
    writer.close()
    writer._flush()
    out: list[str] = []
    was_item = False
    for block in writer.blocks:
        is_item = block.startswith("\0")
        bullet = ""
        if is_item:
            bullet, _, block = block[1:].partition(" ")
            bullet += " "
        if width:
            text = textwrap.fill(
                block,
                width=width,
                initial_indent=indent + bullet,
                subsequent_indent=indent + " " * len(bullet),
                break_long_words=False,
                break_on_hyphens=False,
            )
            # list items stay together; other blocks are paragraphs
            out.append(("\n" if is_item and was_item else "\n\n") + text if out else text)
        else:
            out.append((" " if out else "") + bullet + block)
        was_item = is_item
    return "".join(out)
