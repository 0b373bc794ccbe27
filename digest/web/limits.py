"""How often one client may have us send a confirmation email: a sliding window per client,
in memory (the address is never stored). The limit on all clients together is counted in the
database instead (lifecycle.request_subscription), so it holds across processes."""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta

MAX_CLIENTS = 100_000  # memory bound: the oldest clients are forgotten first


def client_key(host: str | None) -> str:
    """Who counts as one client: an IPv4 address, or an IPv6 /64 (one household or office
    gets a whole /64, and so does an attacker)."""
    if not host:
        return "?"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class ClientLimiter:
    """At most `limit` events per client in any `window`; 0 means no limit."""

    def __init__(self, limit: int, window: timedelta, clock: Callable[[], datetime]) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._events: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str) -> timedelta | None:
        """None when `key` may have one more now; else how long until it may."""
        if not self.limit:
            return None
        now = self.clock()
        with self._lock:
            events = self._events.get(key)
            if events is None:
                return None
            while events and now - events[0] >= self.window:
                events.popleft()
            if len(events) < self.limit:
                return None
            return events[0] + self.window - now

    def record(self, key: str) -> None:
        if not self.limit:
            return
        with self._lock:
            events = self._events.setdefault(key, deque())
            self._events.move_to_end(key)
            events.append(self.clock())
            while len(self._events) > MAX_CLIENTS:
                self._events.popitem(last=False)
