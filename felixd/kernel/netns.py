"""Running felixd's kernel code inside a network namespace without moving the whole process.

A thread that calls setns(2) changes only its own namespace, and a socket keeps the namespace it was
created in. So one long-lived worker thread enters the namespace once; raw netlink sockets are opened
there and files under /proc/sys/net opened there resolve to that namespace. With `netns=None` the
worker stays in the process's own namespace (production: the host).
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(netns: str) -> str:
    return netns if netns.startswith("/") else f"/run/netns/{netns}"


def enter_netns(netns: str) -> None:
    """Move the calling thread into `netns` (a name under /run/netns or a path)."""
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsWorker:
    """One thread living in the namespace; `call(fn)` runs fn there and returns its result."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        if netns is not None and not os.path.exists(netns_path(netns)):
            raise FileNotFoundError(f"network namespace {netns} does not exist")
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"netns-{netns or 'host'}",
            initializer=enter_netns if netns is not None else None,
            initargs=(netns,) if netns is not None else ())

    def call(self, fn: Callable[..., T], *args: object) -> T:
        return self._pool.submit(fn, *args).result()

    async def acall(self, fn: Callable[..., T], *args: object) -> T:
        import asyncio

        return await asyncio.wrap_future(self._pool.submit(fn, *args))

    def socket(self, family: int, type_: int, proto: int) -> socket.socket:
        return self.call(socket.socket, family, type_, proto)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
