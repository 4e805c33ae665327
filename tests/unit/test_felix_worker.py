"""felixd's worker order: a due periodic check waits while feed deltas stream in (a full sync in the
middle of a table load dumps and compares the whole kernel table), and runs once the feed is quiet;
any other full-sync trigger is not held back. The programmer is a recording fake: this is the
scheduling alone (tests/kernel runs the real one)."""

from __future__ import annotations

import argparse
import asyncio
import time

import pytest

from felixd import daemon as felix_daemon
from felixd.daemon import FelixDaemon


class FakeFeed:
    def __init__(self) -> None:
        self.resume = asyncio.Event()
        self.resume.set()
        self.table = object()


class FakeProgrammer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def delta(self, changed: dict[bytes, bytes | None]) -> bool:
        self.log.append(f"delta {len(changed)}")
        return True

    def update_gauges(self, _feed: object) -> None:
        pass


def _daemon(log: list[str]) -> FelixDaemon:
    d = FelixDaemon(argparse.Namespace(node="me", run_dir="/nonexistent"))
    d.programmer = FakeProgrammer(log)  # type: ignore[assignment]
    d.feed = FakeFeed()  # type: ignore[assignment]

    async def full_sync(trigger: str) -> object:
        log.append(f"full {trigger}")
        return object()

    d.full_sync = full_sync  # type: ignore[method-assign]
    return d


def _changes(n: int, start: int = 0) -> dict[bytes, bytes | None]:
    return {bytes((4, 26)) + (start + i).to_bytes(4, "big"): None for i in range(n)}


async def _drain(d: FelixDaemon) -> None:
    while await d._run_one():
        pass


def test_periodic_check_waits_for_the_feed_to_go_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(felix_daemon, "PERIODIC_QUIET", 0.2)

    async def main() -> None:
        log: list[str] = []
        d = _daemon(log)
        d._on_feed(_changes(10), False)
        d.request_full("periodic")
        await _drain(d)
        # the deltas first; the periodic check is due but the feed spoke just now
        assert log == ["delta 10"]
        assert d._full == "periodic"
        d._on_feed(_changes(5, 100), False)
        await _drain(d)
        assert log == ["delta 10", "delta 5"]
        last_feed = time.monotonic()
        # once quiet, the worker is woken for it (maybe more than once: a wake-up armed before the
        # last delta finds the feed not quiet yet and arms another)
        deadline = time.monotonic() + 10
        while d._full is not None:
            d._wake.clear()
            await asyncio.wait_for(d._wake.wait(), deadline - time.monotonic())
            await _drain(d)
        assert time.monotonic() - last_feed >= 0.2
        assert log == ["delta 10", "delta 5", "full periodic"]

    asyncio.run(main())


def test_other_triggers_run_at_once_and_outrank_a_waiting_periodic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(felix_daemon, "PERIODIC_QUIET", 30.0)

    async def main() -> None:
        log: list[str] = []
        d = _daemon(log)
        d._on_feed(_changes(3), False)
        d.request_full("periodic")
        await _drain(d)
        assert log == ["delta 3"]
        d.request_full("config")  # a model change is news: it runs now, under its own name
        await _drain(d)
        assert log == ["delta 3", "full config"]
        d.request_full("feed")
        d.request_full("periodic")  # the first trigger keeps its name
        await _drain(d)
        assert log == ["delta 3", "full config", "full feed"]
        if d._quiet_timer is not None:
            d._quiet_timer.cancel()

    asyncio.run(main())
