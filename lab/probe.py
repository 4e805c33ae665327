"""HTTP probes from inside pods, for the pod-to-pod matrix, without a process per probe.

A socket belongs to the network namespace of the thread that made it. So each pod namespace gets one
thread of ours that joins it and does nothing but make sockets there; the probes themselves (connect,
GET /, read the answer) run together, non-blocking, in the caller's thread, each with its own
time-out. A process per probe (curl) would cost a start-up per request, which under the VM's
emulation is seconds; this costs the HTTP exchange.
"""

from __future__ import annotations

import ctypes
import errno
import os
import selectors
import socket
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field

from proto.record import record

CLONE_NEWNET = 0x40000000


@record(frozen=True)
class Probe:
    ok: bool
    body: str
    seconds: float
    error: str = ""


class ProberError(RuntimeError):
    pass


def _join(netns: str) -> None:
    """Move the calling thread (only it) into the named namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


@record
class _Exchange:
    key: tuple[str, str]
    sock: socket.socket
    request: bytes
    start: float
    sent: int = 0
    connected: bool = False
    done: Probe | None = None
    chunks: list[bytes] = field(default_factory=list)


class Probers:
    """One socket-making thread per source namespace (`start()`), probes from any of them at once."""

    def __init__(self, namespaces: Mapping[str, str]) -> None:
        self.namespaces = dict(namespaces)  # source name (pod-1, ...) -> namespace
        self.threads: dict[str, ThreadPoolExecutor] = {}

    def start(self, timeout: float = 30.0) -> None:
        for src, ns in self.namespaces.items():
            # The initializer runs in the executor's one thread: that thread lives in `ns` from then on.
            ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"netns-{src}", initializer=_join,
                                    initargs=(ns,))
            self.threads[src] = ex
        for src, ex in self.threads.items():
            try:
                ex.submit(lambda: None).result(timeout=timeout)
            except Exception as exc:
                raise ProberError(f"cannot join the namespace of {src}: {exc}") from exc

    def _socket(self, src: str, family: int) -> socket.socket:
        ex = self.threads.get(src)
        if ex is None:
            raise ProberError(f"no prober for {src}")
        return ex.submit(socket.socket, family, socket.SOCK_STREAM).result(timeout=30)

    def probe(self, requests: Sequence[tuple[str, str, str]], timeout: float,
              port: int = 80) -> dict[tuple[str, str], Probe]:
        """(source, target name, target address) -> GET / from that source, all at once; ok when the
        answer is 200 within `timeout`."""
        start = time.monotonic()
        out: dict[tuple[str, str], Probe] = {}
        live: dict[int, _Exchange] = {}
        with selectors.DefaultSelector() as sel:
            for src, name, addr in requests:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                sock = self._socket(src, family)
                sock.setblocking(False)
                host = f"[{addr}]" if ":" in addr else addr
                ex = _Exchange((src, name), sock,
                               f"GET / HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(), start)
                rc = sock.connect_ex((addr, port))
                if rc not in (0, errno.EINPROGRESS):
                    ex.done = Probe(False, "", time.monotonic() - start, os.strerror(rc))
                    sock.close()
                    out[ex.key] = ex.done
                    continue
                live[sock.fileno()] = ex
                sel.register(sock, selectors.EVENT_WRITE)
            end = start + timeout
            while live:
                left = end - time.monotonic()
                if left <= 0:
                    break
                for key, events in sel.select(timeout=left):
                    ex = live[key.fd]
                    self._advance(ex, events, sel)
                    if ex.done is not None:
                        sel.unregister(ex.sock)
                        ex.sock.close()
                        out[ex.key] = ex.done
                        del live[key.fd]
            for ex in live.values():
                sel.unregister(ex.sock)
                ex.sock.close()
                out[ex.key] = Probe(False, "", time.monotonic() - start, "timed out")
        return out

    @staticmethod
    def _advance(ex: _Exchange, events: int, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        try:
            if not ex.connected and events & selectors.EVENT_WRITE:
                err = ex.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    ex.done = Probe(False, "", now - ex.start, os.strerror(err))
                    return
                ex.connected = True
            if ex.sent < len(ex.request) and events & selectors.EVENT_WRITE:
                ex.sent += ex.sock.send(ex.request[ex.sent:])
                if ex.sent == len(ex.request):
                    sel.modify(ex.sock, selectors.EVENT_READ)
                return
            if events & selectors.EVENT_READ:
                chunk = ex.sock.recv(65536)
                if chunk:
                    ex.chunks.append(chunk)
                    return
                data = b"".join(ex.chunks)
                head, _, body = data.partition(b"\r\n\r\n")
                status = head.split(b"\r\n", 1)[0].split()
                ok = len(status) >= 2 and status[1] == b"200"
                ex.done = Probe(ok, body.decode(errors="replace").strip(), now - ex.start,
                                "" if ok else f"answer: {head[:60]!r}")
        except OSError as exc:
            ex.done = Probe(False, "", now - ex.start, str(exc))

    def close(self) -> None:
        for ex in self.threads.values():
            ex.shutdown(wait=True)
        self.threads.clear()
