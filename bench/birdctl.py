"""BIRD 2 for the benchmarks: its control-socket protocol spoken directly, and config text helpers.

No `birdc` process is spawned while timing: one Unix socket, one request, reply lines `NNNN-text`
or ` text` until a final `NNNN text`.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from pathlib import Path

_COUNT = re.compile(r"(\d+) of (\d+) routes for (\d+) networks")
_TOTAL = re.compile(r"Total: (\d+) of (\d+) routes for (\d+) networks")
_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)")
_IMPORTED = re.compile(r"Routes:\s+(\d+) imported")


class BirdCtl:
    """One connection to a BIRD control socket."""

    def __init__(self, path: Path | str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buf = b""
        self._reply()  # the greeting

    def _reply(self) -> list[str]:
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("BIRD closed its control socket")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            text = line.decode(errors="replace")
            lines.append(text)
            if len(text) >= 5 and text[:4].isdigit() and text[4] == " ":
                return lines

    def cmd(self, command: str) -> list[str]:
        self.sock.sendall(command.encode() + b"\n")
        return self._reply()

    def route_count(self) -> int:
        """Routes in the master table (`show route count`)."""
        for line in self.cmd("show route count"):
            m = _COUNT.search(line)
            if m:
                return int(m.group(1))
        return 0

    def imported(self, protocol: str) -> int:
        """Routes a protocol's channel imported (`show protocols all`, its Routes line): a counter BIRD
        keeps, so asking costs it nothing, where `show route count` walks the whole table (at 1M routes,
        polled every 20 ms, that walk took most of the receiver's time)."""
        for line in self.cmd(f"show protocols all {protocol}"):
            body = line[5:] if line[:4].isdigit() else line
            m = _IMPORTED.search(body)
            if m:
                return int(m.group(1))
        return 0

    def networks_in_all_tables(self) -> int:
        """Networks summed over every table (`show route count table all`, its Total line)."""
        for line in self.cmd("show route count table all"):
            m = _TOTAL.search(line)
            if m:
                return int(m.group(3))
        return 0

    def established_at(self, protocol: str) -> float | None:
        """Wall time the protocol reached Established (needs `timeformat protocol iso long ms`)."""
        for line in self.cmd(f"show protocols {protocol}"):
            body = line[5:] if line[:4].isdigit() else line
            cols = body.split()
            if cols and cols[0] == protocol and "Established" in body:
                m = _STAMP.search(body)
                if m:
                    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        return None

    def established_count(self) -> int:
        """BGP protocols in state Established (`show protocols`)."""
        return sum(1 for line in self.cmd("show protocols") if " BGP " in line and "Established" in line)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BirdCtl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bird_conf(router_id: str, log: Path, body: list[str]) -> str:
    """A BIRD 2 config: router id, warnings to a log file, ms timestamps, a slow device scan."""
    # TORTIE_BENCH_BIRD_DEBUG=1 logs every protocol's states and events (to see why a session ends)
    debug = bool(os.environ.get("TORTIE_BENCH_BIRD_DEBUG"))
    levels = "info, debug, trace, remote, warning, error, auth, fatal" if debug else "warning, error, fatal"
    return "\n".join([f"router id {router_id};", f'log "{log}" {{ {levels} }};',
                      *(["debug protocols { states, events };"] if debug else []),
                      "timeformat protocol iso long ms;", "protocol device { scan time 60; }", *body]) + "\n"


def kernel_export(scan_time: int = 60) -> list[str]:
    """A kernel protocol exporting the master table's best routes (proto `bird`, 12)."""
    return ["protocol kernel {", f"  scan time {scan_time};", "  ipv4 { import none; export all; };", "}"]


RTPROT_BIRD = 12  # the protocol number BIRD writes its kernel routes with
