"""Real control servers with canned answers, for tortiectl's formatting tests.

The servers are `runtime.control.ControlServer` on Unix sockets, run by an event loop in a background
thread, so the blocking CLI talks to them exactly as it talks to a running daemon. The handlers
return the documented shapes of bgpd's and felixd's control methods and record how they were called.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ctl.__main__ import main
from runtime.control import ControlServer

Handlers = dict[str, Callable[..., Any]]


class StubDaemons:
    """`start("bgpd", {...})` serves `<run_dir>/bgpd.sock`; `calls` lists (daemon, method, params)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stub-daemons", daemon=True)
        self._thread.start()
        self._servers: dict[str, ControlServer] = {}
        self._raw: list[asyncio.AbstractServer] = []

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=10)

    def socket(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.sock"

    def start(self, daemon: str, handlers: Handlers) -> None:
        server = ControlServer(str(self.socket(daemon)))
        for method, handler in handlers.items():
            server.register(method, self._recording(daemon, method, handler))
        self._run(server.start())
        self._servers[daemon] = server

    def _recording(self, daemon: str, method: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(**params: Any) -> Any:
            self.calls.append((daemon, method, params))
            return handler(**params)

        return wrapper

    def start_raw(self, daemon: str, reply: bytes) -> None:
        """Something else on the socket: answers every request line with `reply`, then hangs up."""

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(reply)
            await writer.drain()
            writer.close()

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_unix_server(serve, str(self.socket(daemon)))

        self._raw.append(self._run(start()))

    def stop(self, daemon: str) -> None:
        self._run(self._servers.pop(daemon).close())

    def close(self) -> None:
        for daemon in list(self._servers):
            self.stop(daemon)
        for server in self._raw:
            server.close()
            self._run(server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextlib.contextmanager
def stub_daemons() -> Iterator[StubDaemons]:
    """In a short directory of its own: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="tctl-") as run_dir:
        stubs = StubDaemons(Path(run_dir))
        try:
            yield stubs
        finally:
            stubs.close()


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run_ctl(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    """tortiectl in-process; the blocking client talks to the stub servers' thread."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return Ran(code, out, err)
