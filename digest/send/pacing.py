"""Pacing: the configured rate, and slowing the whole run when the server asks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Spaces sends to the configured rate, and slows the whole run when the server asks.

    Every connection calls reserve() (or wait(), from blocking code) before it sends.
    Thread-safe.
    """

    def __init__(
        self, per_second: float, per_hour: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        intervals = [
            1.0 / per_second if per_second else 0.0,
            3600.0 / per_hour if per_hour else 0.0,
        ]
        self.base = max(intervals)
        self.interval = self.base
        self.next_slot = clock()
        self.paused_until = 0.0
        self.streak = 0
        self.calm = 0
        self.lock = threading.Lock()

    def reserve(self) -> float:
        """Take the next slot: the seconds to wait before sending in it (0: now)."""
        with self.lock:
            now = self.clock()
            slot = max(self.next_slot, self.paused_until, now)
            self.next_slot = slot + self.interval
        return slot - now

    def due(self) -> bool:
        """Whether a send may go at once: its slot has come and no pause holds it back."""
        with self.lock:
            now = self.clock()
            return self.next_slot <= now and self.paused_until <= now

    def wait(self, stop: threading.Event) -> None:
        delay = self.reserve()
        if delay > 0:
            stop.wait(delay)

    def throttled(self) -> float:
        """421/45x or a dropped line: pause everyone (longer each time in a row) and halve
        the rate; the rate recovers step by step once the server is happy again."""
        with self.lock:
            self.streak += 1
            pause = min(0.5 * 2 ** (self.streak - 1), 30.0)
            self.paused_until = max(self.paused_until, self.clock() + pause)
            # Halve the rate, down to one message every 10 s at worst; never faster than the
            # configured rate (an hourly cap slower than that stays as configured).
            self.interval = max(self.base, min(max(self.interval * 2, 0.01), 10.0))
            self.calm = 0
            return float(pause)

    def ok(self) -> None:
        with self.lock:
            self.streak = 0
            self.calm += 1
            if self.calm >= 50 and self.interval > self.base:
                self.interval = max(self.base, self.interval / 2)
                self.calm = 0
