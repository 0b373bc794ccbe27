"""Where a fetch may connect, and for how long in all.

Two rules httpx cannot enforce by itself:

- **An overall deadline.** httpx's timeouts are per operation (connect, each read), so a
  server that trickles its response headers a byte at a time never trips them. Every socket
  operation of a fetch here gets at most the time left until the fetch's deadline.
- **No redirects into private networks.** A feed is fetched from the address staff typed; an
  intranet feed may be private (allow_private_feeds). A redirect to *another* host must lead to
  a public address: not loopback, private, link-local (the cloud metadata service at
  169.254.169.254), or otherwise reserved. The address is checked twice: when the redirect is
  read (before anything connects to it), and again for the address actually connected to (a
  name that resolves differently the second time gains nothing).

The rules of the fetch in progress live in a context variable, so the fetch threads of one
shared client each keep their own.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx


class AddressRefused(Exception):
    """A fetch would have connected somewhere it must not; the message says where and why."""


@dataclass(frozen=True)
class Rules:
    trusted_host: str  # the host staff typed: it may be private if allow_private
    allow_private: bool
    deadline: float  # time.monotonic() by which the whole fetch must be done


_RULES: contextvars.ContextVar[Rules | None] = contextvars.ContextVar("fetch_rules", default=None)


@contextmanager
def rules(trusted_host: str, *, allow_private: bool, total_timeout: float) -> Iterator[Rules]:
    current = Rules(trusted_host.lower(), allow_private, time.monotonic() + total_timeout)
    token = _RULES.set(current)
    try:
        yield current
    finally:
        _RULES.reset(token)


def why_not_public(address: str) -> str | None:
    """Why `address` (an IP) is not a public internet address, or None if it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for label, test in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                        ("private", ip.is_private), ("multicast", ip.is_multicast),
                        ("unspecified", ip.is_unspecified), ("reserved", ip.is_reserved)):  # fmt: skip
        if test:
            return label
    return None if ip.is_global else "not public"


def _addresses(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return [host.strip("[]")]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []  # the connection attempt reports the DNS failure
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str, port: int) -> list[str]:
    """The addresses of `host` this fetch may connect to; AddressRefused if there are none."""
    current = _RULES.get()
    addresses = _addresses(host, port)
    if current is None:
        return addresses
    trusted = host.lower().strip("[]") == current.trusted_host.strip("[]")
    if trusted and current.allow_private:
        return addresses
    allowed = [a for a in addresses if why_not_public(a) is None]
    if addresses and not allowed:
        reason = why_not_public(addresses[0])
        shown = host if host.strip("[]") == addresses[0] else f"{host} ({addresses[0]})"
        if not trusted:  # only a redirect leads to another host
            raise AddressRefused(
                f"refusing to follow a redirect to {shown}, a {reason} address: a feed may "
                "only redirect to public addresses"
            )
        raise AddressRefused(
            f"refusing to fetch from {shown}, a {reason} address (allow_private_feeds is off)"
        )
    return allowed


def remaining_or_none() -> float | None:
    """Seconds left before the fetch's deadline (None once it has passed, or outside one:
    then inf)."""
    current = _RULES.get()
    if current is None:
        return float("inf")
    left = current.deadline - time.monotonic()
    return left if left > 0 else None


def remaining(timeout: float | None) -> float | None:
    """`timeout`, cut to the time left before the fetch's deadline; ReadTimeout if none."""
    current = _RULES.get()
    if current is None:
        return timeout
    left = current.deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the fetch's overall deadline has passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, remaining(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self.inner.start_tls(ssl_context, server_hostname, remaining(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = check_host(host, port)
        except AddressRefused as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses or [host]:  # no address: let the connect report DNS
            try:
                stream = self.inner.connect_tcp(
                    address, port, remaining(timeout), local_address, socket_options
                )
                return _Stream(stream)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("feeds are fetched over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def guarded_transport(max_connections: int) -> httpx.HTTPTransport:
    """An httpx transport whose connections follow the rules of the fetch in progress."""
    limits = httpx.Limits(max_connections=max_connections)
    transport = httpx.HTTPTransport(limits=limits)
    # httpx does not let us pass a network backend; rebuild its pool with ours (same settings
    # as HTTPTransport makes for a direct connection).
    transport._pool = httpcore.ConnectionPool(  # noqa: SLF001
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_Backend(),
    )
    return transport
