"""Issue #10: the pacer after a throttle is never faster than configured (a per-hour limit
slower than 360/h stayed raised to 360/h for good after one 4xx). A fake clock stands in
for time; nothing here measures time."""

from __future__ import annotations

import pytest

from digest.send.pacing import Pacer

from .helpers.clock import FakeClock, RecordingStop

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
