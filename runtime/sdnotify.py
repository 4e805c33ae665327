"""sd_notify(3) over the AF_UNIX datagram socket systemd hands us in NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]  # abstract namespace socket

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        # Non-blocking: a notify socket nobody drains must never stall the event loop (the watchdog
        # pings from it); a message that does not fit is dropped.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
            try:
                sock.sendto("\n".join(fields).encode(), self.address)
            except OSError:
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Half of WATCHDOG_USEC in seconds when the watchdog is meant for this process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2_000_000
        except ValueError:
            return None

    async def watchdog(self, interval: float | None = None) -> None:
        """Pings from a task on the event loop: a stuck loop stops the pings and systemd notices."""
        interval = interval or self.watchdog_interval()
        if not interval or not self.enabled:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def start_watchdog(self) -> asyncio.Task[None] | None:
        if self.watchdog_interval() is None or not self.enabled:
            return None
        return asyncio.get_running_loop().create_task(self.watchdog())

    @staticmethod
    async def cancel(task: asyncio.Task[None] | None) -> None:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
