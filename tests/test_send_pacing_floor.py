"""Issue #10: the pacer after a throttle is never faster than configured (a per-hour limit
slower than 360/h stayed raised to 360/h for good after one 4xx). A fake clock stands in
for time; nothing here measures time."""

from __future__ import annotations

import threading

import pytest

from digest.send.pacing import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingStop(threading.Event):
    """Records how long the pacer asked to wait, and moves the fake clock on by that much."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(round(timeout, 6))
        self.clock.now += timeout
        return False


# The pacer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("per_hour", [100.0, 60.0, 359.0])
def test_a_throttle_never_makes_an_hourly_cap_faster_than_configured(per_hour: float) -> None:
    """A per-hour limit slower than 360/h stayed raised to 360/h for good after one 4xx."""
    clock = FakeClock()
    stop = RecordingStop(clock)
    pacer = Pacer(0, per_hour, clock=clock)
    interval = 3600.0 / per_hour
    for _ in range(3):
        pacer.wait(stop)
    assert stop.waits == [pytest.approx(interval)] * 2
    pacer.throttled()  # a 421/45x
    before = len(stop.waits)
    for _ in range(5):
        pacer.wait(stop)
    assert all(w >= interval - 1e-6 for w in stop.waits[before:]), stop.waits
    assert pacer.interval >= interval
    for _ in range(200):  # the server is happy again: back to the configured rate, no faster
        pacer.ok()
    before = len(stop.waits)
    for _ in range(5):
        pacer.wait(stop)
    assert stop.waits[before:] == [pytest.approx(interval)] * 5


def test_repeated_throttles_never_go_below_the_configured_interval() -> None:
    clock = FakeClock()
    stop = RecordingStop(clock)
    pacer = Pacer(0.05, 0, clock=clock)  # one every 20 s, slower than the 10 s floor of a throttle
    for _ in range(6):
        pacer.throttled()
        assert pacer.interval >= 20.0
    pacer.wait(stop)
    pacer.wait(stop)
    assert all(w >= 20.0 for w in stop.waits[1:])
