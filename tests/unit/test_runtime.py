"""Daemon plumbing: sd_notify, the control socket, the management endpoint, log formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
from pathlib import Path

import pytest

from runtime import logs
from runtime.control import ControlError, ControlServer, call
from runtime.http import ManagementServer
from runtime.prom import CollectorRegistry, Counter
from runtime.sdnotify import Notifier


def systemd_side(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock, path


def test_sd_notify_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = systemd_side(tmp_path)
    with sock:
        n = Notifier(path)
        assert n.ready("peers: 3 established")
        assert sock.recv(4096).decode().split("\n") == ["READY=1", "STATUS=peers: 3 established"]
        assert n.reloading()
        fields = dict(line.split("=", 1) for line in sock.recv(4096).decode().split("\n"))
        assert fields["RELOADING"] == "1" and int(fields["MONOTONIC_USEC"]) > 0
        assert n.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
    assert not Notifier("").ready()


async def test_watchdog_pings_from_the_event_loop(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = systemd_side(tmp_path)
    sock.setblocking(False)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier(path)
    assert n.watchdog_interval() == pytest.approx(0.02)
    task = n.start_watchdog()
    loop = asyncio.get_running_loop()
    pings = 0
    deadline = loop.time() + 5
    while pings < 3 and loop.time() < deadline:
        await asyncio.sleep(0.005)
        try:
            while sock.recv(64) == b"WATCHDOG=1":
                pings += 1
        except BlockingIOError:
            pass
    assert pings >= 3
    await Notifier.cancel(task)
    with sock:
        pass


async def test_control_round_trip_and_errors(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl.sock")
    server = ControlServer(path)

    async def slow_status(verbose: bool = False) -> dict[str, object]:
        await asyncio.sleep(0)
        return {"peers": 3, "verbose": verbose}

    def failing() -> None:
        raise ControlError("no such peer 10.0.0.9")

    server.register("status", slow_status)
    server.register("fail", failing)
    await server.start()
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"
        result = await asyncio.to_thread(call, path, "status", verbose=True)
        assert result == {"peers": 3, "verbose": True}
        with pytest.raises(ControlError, match="no such peer"):
            await asyncio.to_thread(call, path, "fail")
        with pytest.raises(ControlError, match="unknown method"):
            await asyncio.to_thread(call, path, "nope")
    finally:
        await server.close()
    with pytest.raises(ControlError, match="no such socket"):
        call(path, "status")


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_management_endpoint() -> None:
    registry = CollectorRegistry()
    c = Counter("tortie_test_events", "events", registry=registry)
    state = {"ready": False}
    server = ManagementServer(registry, port=0, ready=lambda: (state["ready"], "waiting for peers"))
    await server.start()
    try:
        c.inc(3)
        code, body = await http_get(server.port, "/metrics")
        assert code == 200 and "tortie_test_events_total 3.0" in body
        assert (await http_get(server.port, "/liveness"))[0] == 200
        assert await http_get(server.port, "/readiness") == (503, "waiting for peers\n")
        state["ready"] = True
        assert (await http_get(server.port, "/readiness"))[0] == 200
        assert (await http_get(server.port, "/other"))[0] == 404
    finally:
        await server.close()
    assert server.host == "127.0.0.1"


def test_log_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    logs.setup("info", "journal", stream=buf)
    logging.getLogger("tortie.bgp").warning("peer %s down", "10.30.0.56")
    logging.getLogger("tortie.bgp").debug("hidden")
    assert buf.getvalue() == "<4>tortie.bgp: peer 10.30.0.56 down\n"
    buf = io.StringIO()
    logs.setup("debug", "json", stream=buf)
    logging.getLogger("tortie.felix").info("route replaced", extra={"prefix": "192.168.1.0/26"})
    doc = json.loads(buf.getvalue())
    assert (doc["level"], doc["msg"], doc["prefix"]) == ("info", "route replaced", "192.168.1.0/26")
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    buf = io.StringIO()
    logs.setup("Warning", "auto", stream=buf)
    logging.getLogger("x").error("boom")
    assert buf.getvalue().startswith("<3>")
    assert logs.parse_level("Fatal") == logging.CRITICAL
    with pytest.raises(ValueError):
        logs.parse_level("loud")
    logs.setup("warning", "text", stream=io.StringIO())


def test_sd_notify_never_blocks_on_a_full_socket(tmp_path: Path) -> None:
    sock, path = systemd_side(tmp_path)
    with sock:
        n = Notifier(path)
        sent = [n.send("WATCHDOG=1") for _ in range(5000)]  # nobody reads: the queue fills up
        assert sent[0] and not all(sent)  # the first went out, later ones were dropped, none blocked
