"""Fetching feeds and pages over HTTP with limits we control.

Timeouts, a size cap (counted after decompression, so a gzip bomb is refused too), a redirect
limit, a clear User-Agent and conditional GET (ETag / Last-Modified, RFC 9110 §13). Failures
raise FetchError with a reason a person can act on; they never raise anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from digest import __version__
from digest.errors import DigestError, UsageError
from digest.news import guard
from digest.news.guard import guarded_transport

T = TypeVar("T")
R = TypeVar("R")

ACCEPT_FEED = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, text/html;q=0.5, */*;q=0.1"
)
ACCEPT_PAGE = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"


class FetchError(DigestError):
    """A source could not be fetched or read; the message says why."""


@dataclass(frozen=True)
class FetchLimits:
    """How long and how much one fetch may take."""

    timeout: float = 20.0  # seconds for connecting and between bytes
    total_timeout: float = 60.0  # seconds for the whole request, headers and body: trickles
    allow_private: bool = True  # the address typed may be private (intranet feeds)
    max_bytes: int = 5 * 1024 * 1024  # after decompression
    max_redirects: int = 5
    workers: int = 8  # concurrent fetches
    user_agent: str = f"digest/{__version__} (newsletter feed reader)"


@dataclass(frozen=True)
class FetchResult:
    url: str  # after redirects
    status: int
    content: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    redirected: bool

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def check_fetch_url(url: str) -> str:
    """The URL, stripped, if it is http(s) with a host; UsageError otherwise."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        host = None
    if (
        host is None
        or parts.scheme.lower() not in ("http", "https")
        or any(ch.isspace() or ord(ch) < 32 for ch in url)
    ):
        raise UsageError(
            f"{url!r} is not an http(s) URL",
            hint="Give the full address, starting with https:// or http://.",
        )
    return url


def make_client(limits: FetchLimits) -> httpx.Client:
    """One client for a batch of fetches (it pools connections and is thread-safe).

    Redirects are followed by `_get`, one at a time, so each can be checked first; every
    connection goes through digest.news.guard (the overall deadline, no private addresses
    reached by a redirect).
    """
    return httpx.Client(
        timeout=httpx.Timeout(limits.timeout),
        follow_redirects=False,
        headers={"User-Agent": limits.user_agent, "Accept-Encoding": "gzip, deflate"},
        transport=guarded_transport(max(limits.workers, 1)),
        trust_env=False,  # a proxy from the environment would bypass the checks of guard.py
    )


def fetch_url(
    url: str,
    *,
    limits: FetchLimits | None = None,
    client: httpx.Client | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    accept: str = ACCEPT_FEED,
) -> FetchResult:
    """GET `url`; a 304 comes back as a result with `not_modified`. Raises FetchError."""
    limits = limits or FetchLimits()
    url = check_fetch_url(url)
    headers = {"Accept": accept}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    own = client is None
    client = client or make_client(limits)
    try:
        return _get(client, url, headers, limits)
    finally:
        if own:
            client.close()


def _get(
    client: httpx.Client, url: str, headers: dict[str, str], limits: FetchLimits
) -> FetchResult:
    host = urlsplit(url).hostname or url
    with guard.rules(host, allow_private=limits.allow_private, total_timeout=limits.total_timeout):
        return _get_checked(client, url, host, headers, limits)


def _get_checked(
    client: httpx.Client, url: str, host: str, headers: dict[str, str], limits: FetchLimits
) -> FetchResult:
    try:
        return _follow(client, url, headers, limits)
    except FetchError:
        raise
    except httpx.UnsupportedProtocol as exc:
        raise FetchError(f"redirected to an address that is not http(s): {exc}") from None
    except httpx.TimeoutException:
        if _past_deadline():
            raise FetchError(
                f"{host} took longer than {limits.total_timeout:g} s in all to answer",
                hint="The server is too slow (or sends its answer a trickle at a time); it will "
                "be tried again on the next fetch.",
            ) from None
        raise FetchError(
            f"{host} did not answer within {limits.timeout:g} s (timeout)",
            hint="The server is down or slow; it will be tried again on the next fetch.",
        ) from None
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, guard.AddressRefused) or "refusing to" in str(exc):
            raise FetchError(str(exc), hint=_REFUSED_HINT) from None
        raise FetchError(
            _connect_reason(host, exc), hint="Check the address; the site may be down."
        ) from None
    except httpx.InvalidURL as exc:  # e.g. a redirect to a malformed Location
        raise FetchError(f"invalid address from {host}: {exc}") from None
    except httpx.DecodingError:
        raise FetchError(f"{host} sent a corrupt compressed body") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"network error talking to {host}: {exc or type(exc).__name__}") from None


_REFUSED_HINT = (
    "A feed on the internet must not lead digest into this server's own network (cloud "
    "metadata, intranet services). Use the final public address, or ask who runs the feed."
)


def _past_deadline() -> bool:
    return guard.remaining_or_none() is None


def _follow(
    client: httpx.Client, url: str, headers: dict[str, str], limits: FetchLimits
) -> FetchResult:
    """GET `url`, following at most `max_redirects` redirects, each checked before it is
    requested (guard.check_host: where it leads)."""
    current = url
    for hop in range(limits.max_redirects + 1):
        parts = urlsplit(current)
        if hop:
            try:
                guard.check_host(parts.hostname or "", parts.port or _default_port(parts.scheme))
            except guard.AddressRefused as exc:
                raise FetchError(str(exc), hint=_REFUSED_HINT) from None
        request = client.build_request("GET", current, headers=headers)
        response = client.send(request, stream=True)
        try:
            location = response.headers.get("Location")
            if response.is_redirect and location:
                current = str(response.url.join(location))
                if urlsplit(current).scheme.lower() not in ("http", "https"):
                    raise FetchError(f"redirected to an address that is not http(s): {current}")
                continue
            return _read(response, url, limits, redirected=hop > 0)
        finally:
            response.close()
    raise FetchError(
        f"too many redirects (more than {limits.max_redirects}) from {url}",
        hint="The address redirects in a loop or too often; use the final address.",
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme.lower() == "https" else 80


def _read(
    response: httpx.Response, url: str, limits: FetchLimits, *, redirected: bool
) -> FetchResult:
    final = str(response.url)
    host = response.url.host or url
    if response.status_code == 304:
        return _result(response, final, b"", redirected=redirected)
    if response.status_code >= 400:
        raise FetchError(
            f"HTTP {response.status_code} {response.reason_phrase or ''}".rstrip()
            + (f" from {final}" if final != url else ""),
            hint=_status_hint(response.status_code),
        )
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():  # decompressed
        size += len(chunk)
        if size > limits.max_bytes:
            raise _too_large(limits)
        if _past_deadline():
            raise FetchError(
                f"{host} took longer than {limits.total_timeout:g} s in all to answer",
                hint="The server is too slow; try again later.",
            )
        chunks.append(chunk)
    return _result(response, final, b"".join(chunks), redirected=redirected)


def _result(
    response: httpx.Response, final: str, content: bytes, *, redirected: bool
) -> FetchResult:
    return FetchResult(
        url=final,
        status=response.status_code,
        content=content,
        content_type=response.headers.get("Content-Type", ""),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        redirected=redirected,
    )


def _too_large(limits: FetchLimits) -> FetchError:
    return FetchError(
        f"the response is larger than the {limits.max_bytes // 1024:,} KB limit",
        hint="This is not a normal feed or article page; check the address.",
    )


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return "The site refuses us; the feed may need a login or block automated readers."
    if status in (404, 410):
        return "The address is wrong or the feed has moved; check it in a browser."
    if status == 429 or status >= 500:
        return "The site has a problem; it will be tried again on the next fetch."
    return "Check the address in a browser."


def _connect_reason(host: str, exc: httpx.ConnectError) -> str:
    text = str(exc)
    lowered = text.lower()
    if any(
        s in lowered
        for s in (
            "name or service not known",
            "nodename nor servname",
            "getaddrinfo",
            "name resolution",
            "no address associated",
        )
    ):
        return f"cannot find the host {host} (DNS lookup failed)"
    if "refused" in lowered:
        return f"{host} refused the connection"
    if "certificate" in lowered or "ssl" in lowered:
        return f"TLS error with {host}: {text}"
    return f"cannot connect to {host}: {text or type(exc).__name__}"


def run_pool(func: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`func` over `items` with at most `workers` threads; results in the order of `items`.

    `func` must not raise (wrap failures in its result); network waits overlap, the GIL is
    only held while parsing.
    """
    if len(items) <= 1 or workers <= 1:
        return [func(i) for i in items]
    with ThreadPoolExecutor(
        max_workers=min(workers, len(items)), thread_name_prefix="fetch"
    ) as pool:
        return list(pool.map(func, items))
