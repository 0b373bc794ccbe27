"""The event loop a send runs on, from blocking code, and the ticker that enforces the SMTP
client's deadlines on it (digest.send.smtp)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

TICK_SECONDS = 0.1


class Watched(Protocol):
    def _check(self, now: float) -> bool:
        """Act on a deadline passed or a stop; False when no longer armed."""


T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv; its transports are C, ~2-3x less work per reply) where
    it is installed, else asyncio's own. The SMTP client behaves the same on both."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_blocking(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on `loop` until it is done, from blocking code. Where this thread already
    runs an event loop (a notebook, an async web app, Playwright's sync API), `loop` runs on
    a thread of its own meanwhile."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return loop.run_until_complete(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="digest-smtp") as pool:
        return pool.submit(loop.run_until_complete, coro).result()


class Ticker:
    """One per event loop: cuts the connections past their deadline, or told to stop while
    they may still be stopped safely."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weakly: TICKERS is keyed by the loop, and a value holding its key would keep every
        # closed loop (one per confirmation email sent by `digest serve`) alive for good
        # (nor the timer handle: it holds the loop too)
        self._loop = weakref.ref(loop)
        self.armed: set[Watched] = set()
        self.scheduled = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        assert loop is not None, "a ticker outlived its loop"
        return loop

    def arm(self, conn: Watched) -> None:
        self.armed.add(conn)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_later(TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        for conn in list(self.armed):
            if not conn._check(now):
                self.armed.discard(conn)
        self.scheduled = bool(self.armed)
        if self.scheduled:
            self.loop.call_later(TICK_SECONDS, self._tick)


TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def ticker(loop: asyncio.AbstractEventLoop) -> Ticker:
    """The loop's ticker (one per loop)."""
    found = TICKERS.get(loop)
    if found is None:
        found = TICKERS[loop] = Ticker(loop)
    return found


async def sleep_until(seconds: float, until: asyncio.Event) -> None:
    """Sleep `seconds`, or less if `until` is set first."""
    if until.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(until.wait(), seconds)


def settle(waiter: asyncio.Future[None]) -> None:
    """Wake whoever waits on `waiter` (a timer's callback), unless something did already."""
    if not waiter.done():
        waiter.set_result(None)
