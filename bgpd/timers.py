"""Deadline timers for the sans-I/O session: no clock of their own, every call takes `now`.

RFC 4271 section 10 jitters ConnectRetryTime, KeepaliveTime, MinASOriginationInterval and
MinRouteAdvertisementInterval by a factor uniformly distributed in [0.75, 1.0]; the hold timer is not
jittered. The random source is injected so tests can pin it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

JITTER_LOW = 0.75
JITTER_HIGH = 1.0


class RandomSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def jittered(base: float, rng: RandomSource) -> float:
    return base * rng.uniform(JITTER_LOW, JITTER_HIGH)


class Timer:
    """One named deadline; stopped when `deadline` is None."""

    __slots__ = ("deadline", "duration", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.deadline: float | None = None
        self.duration = 0.0

    def start(self, now: float, duration: float) -> None:
        self.duration = duration
        self.deadline = now + duration

    def stop(self) -> None:
        self.deadline = None

    @property
    def running(self) -> bool:
        return self.deadline is not None

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def __repr__(self) -> str:
        return f"Timer({self.name}, deadline={self.deadline})"


def earliest(*timers: Timer) -> float | None:
    deadlines = [t.deadline for t in timers if t.deadline is not None]
    return min(deadlines) if deadlines else None


class LoopTimer:
    """One `loop.call_at` for the earliest of a caller's deadlines (aioquic's pattern): re-armed only
    when that deadline changes, so a busy caller does not churn timer handles."""

    def __init__(self, loop: object, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.callback = callback
        self._handle: object | None = None
        self.at: float | None = None

    def arm(self, when: float | None) -> None:
        if when == self.at and self._handle is not None:
            return
        self.cancel()
        self.at = when
        if when is not None:
            self._handle = self.loop.call_at(when, self._fire)  # type: ignore[attr-defined]

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()  # type: ignore[attr-defined]
            self._handle = None
        self.at = None

    def _fire(self) -> None:
        self._handle = None
        self.at = None
        self.callback()
