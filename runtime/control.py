"""The control socket: one JSON request per line, one JSON reply per line, over a Unix socket.

Request: {"method": "status", "params": {...}}. Reply: {"result": ...} or {"error": "text"}.
Methods are plain callables registered by each daemon; tortiectl is the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("tortie.control")

Handler = Callable[..., Any | Awaitable[Any]]
MAX_LINE = 16 * 1024 * 1024


class ControlError(Exception):
    pass


class ControlServer:
    def __init__(self, path: str, mode: int = 0o660) -> None:
        self.path = path
        self.mode = mode
        self.methods: dict[str, Handler] = {}
        self._server: asyncio.AbstractServer | None = None

    def register(self, name: str, handler: Handler) -> None:
        self.methods[name] = handler

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        os.chmod(self.path, self.mode)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(await self._dispatch(line), default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            method = self.methods[req["method"]]
        except (ValueError, KeyError, TypeError):
            return {"error": f"bad request or unknown method; methods: {', '.join(sorted(self.methods))}"}
        try:
            result = method(**(req.get("params") or {}))
            if inspect.isawaitable(result):
                result = await result
            return {"result": result}
        except ControlError as exc:
            return {"error": str(exc)}
        except Exception as exc:  # a failing handler must not take the daemon down
            log.exception("control method %s failed", req.get("method"))
            return {"error": f"{type(exc).__name__}: {exc}"}


def call(path: str, method: str, timeout: float = 10.0, **params: Any) -> Any:
    """Blocking client for tortiectl: raises ControlError with a clear message on any failure."""
    try:
        os.stat(path)
    except FileNotFoundError:
        raise ControlError(f"{path}: no such socket (is the daemon running with this --run-dir?)") from None
    except PermissionError as exc:  # the run directory is not ours to enter (root and group tortie)
        raise ControlError(f"{path}: {exc.strerror} (the sockets are for root and group tortie)") from exc
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps({"method": method, "params": params}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from exc
    if not buf:
        raise ControlError(f"{path}: the daemon closed the connection without answering")
    reply = json.loads(buf)
    if "error" in reply:
        raise ControlError(reply["error"])
    return reply.get("result")
