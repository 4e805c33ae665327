"""The management HTTP endpoint: /metrics (Prometheus), /readiness and /liveness.

Served from the daemon's own event loop, so /liveness answering proves the loop is not stuck.
Binds 127.0.0.1 unless told otherwise; never 0.0.0.0 by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from runtime.prom import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadyCheck = Callable[[], tuple[bool, str]]


class ManagementServer:
    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9092,
                 ready: ReadyCheck | None = None, on_scrape: Callable[[], None] | None = None,
                 metrics: bool = True) -> None:
        self.registry = registry
        self.metrics = metrics  # False (prometheusMetricsEnabled: false): no /metrics, health only
        self.on_scrape = on_scrape  # refresh gauges that are cheaper to read than to keep current
        self.host = host
        self.port = port
        self.ready = ready or (lambda: (True, "ok"))
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = request.split(b"\r\n", 1)[0].split()
            path = parts[1].decode(errors="replace").split("?")[0] if len(parts) > 1 else "/"
            if path == "/metrics" and not self.metrics:
                status, ctype, body = "404 Not Found", "text/plain", b"metrics disabled (prometheusMetricsEnabled: false)\n"
            elif path == "/metrics":
                if self.on_scrape is not None:
                    self.on_scrape()
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
            elif path == "/liveness":
                status, ctype, body = "200 OK", "text/plain", b"live\n"
            elif path == "/readiness":
                ok, why = self.ready()
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "text/plain", (why + "\n").encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
