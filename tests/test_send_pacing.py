"""The send pacer: messages per second and per hour, and slowing down when the server asks.
A fake clock stands in for time (the only thing tests may fake); nothing here measures time."""

from __future__ import annotations

from digest.send.pacing import Pacer

from .helpers.clock import FakeClock, RecordingStop


def test_unlimited_never_waits() -> None:
    clock = FakeClock()
    stop = RecordingStop(clock)
    pacer = Pacer(0, 0, clock=clock)
    for _ in range(5):
        pacer.wait(stop)
    assert stop.waits == []


def test_per_second_spaces_messages_evenly() -> None:
    clock = FakeClock()
    stop = RecordingStop(clock)
    pacer = Pacer(4, 0, clock=clock)  # 4 a second: one every 0.25 s
    for _ in range(5):
        pacer.wait(stop)
    assert stop.waits == [0.25, 0.25, 0.25, 0.25]


def test_per_hour_cap_wins_when_it_is_stricter() -> None:
    clock = FakeClock()
    stop = RecordingStop(clock)
    pacer = Pacer(10, 360, clock=clock)  # 10/s, but at most 360 an hour: one every 10 s
    for _ in range(3):
        pacer.wait(stop)
    assert stop.waits == [10.0, 10.0]


def test_throttling_pauses_everyone_and_halves_the_rate_then_recovers() -> None:
    clock = FakeClock()
    stop = RecordingStop(clock)
    pacer = Pacer(10, 0, clock=clock)  # one every 0.1 s
    pacer.wait(stop)
    assert pacer.throttled() == 0.5  # a 421/45x: pause
    pacer.wait(stop)
    assert stop.waits[-1] >= 0.5
    assert pacer.interval == 0.2  # and half the rate
    assert pacer.throttled() == 1.0  # again in a row: a longer pause
    for _ in range(50):
        pacer.ok()
    assert pacer.interval == 0.2  # recovers step by step
    for _ in range(50):
        pacer.ok()
    assert pacer.interval == 0.1  # back to the configured rate, no faster
