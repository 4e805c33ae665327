"""A UDP echo prober for one pod: answers every probe sent to it, and probes every other pod.

    python -m lab.prober --port 7007 --rate 25 --timeout 1.0 pod-2=192.168.133.194 pod-3=...

(NAME=IP:PORT aims at another port than the prober's own.)

Run inside a pod's network namespace. Each probe carries its target's index, a sequence number and
its send time (CLOCK_MONOTONIC, which every namespace on the machine shares); the target echoes it
unchanged. Probes are resolved in order per target: answered within `timeout`, or lost (a late
answer is still a loss). Every probe is counted. Output on stdout, one line each, for whoever runs
the chaos (lab.chaos.ProbeMatrix):

    READY                                 the sockets are bound
    L <target> <seq> <sent>               probe <seq> to <target>, sent at <sent>, was lost
    T <target> <resolved> <sent> <acked>  every probe sent up to time <resolved> is resolved;
                                          totals so far (one line per target every tick)

The schedule is absolute (probe k at start + k / rate), so a slow moment sends the missed probes at
once rather than fewer of them; their send time is when they really left.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import field

from proto.record import record

MAGIC = b"TCHP"
PROBE = struct.Struct("!4sHId")  # magic, target index, sequence number, send time
TICK = 0.1  # seconds between T lines


@record
class Target:
    name: str
    address: tuple[str, int]
    sent: int = 0
    acked: int = 0
    pending: deque[tuple[int, float]] = field(default_factory=deque)  # (seq, sent) not yet resolved
    answered: set[int] = field(default_factory=set)  # pending seqs that were answered in time
    resolved_through: float = 0.0


def parse_targets(specs: list[str], port: int) -> list[Target]:
    out = []
    for spec in specs:
        name, sep, addr = spec.partition("=")
        ip, colon, own_port = addr.partition(":")
        if not sep or not name or not ip or (colon and not own_port.isdigit()):
            raise SystemExit(f"target {spec!r}: want NAME=IP or NAME=IP:PORT")
        out.append(Target(name, (ip, int(own_port) if colon else port)))
    return out


class Prober:
    def __init__(self, targets: list[Target], port: int, rate: float, timeout: float) -> None:
        self.targets = targets
        self.rate = rate
        self.timeout = timeout
        self.echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.echo.bind(("0.0.0.0", port))
        self.echo.setblocking(False)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("0.0.0.0", 0))
        self.client.setblocking(False)
        self.out = sys.stdout

    def emit(self, line: str) -> None:
        self.out.write(line + "\n")

    def send_due(self, now: float, start: float, k: int) -> int:
        """Send every round of probes due by `now`; returns the next round's number."""
        while start + k / self.rate <= now:
            for i, t in enumerate(self.targets):
                sent = time.monotonic()
                t.sent += 1
                t.pending.append((t.sent, sent))
                try:
                    self.client.sendto(PROBE.pack(MAGIC, i, t.sent, sent), t.address)
                except OSError:
                    pass  # no route or unreachable: the probe is counted and will resolve as lost
            k += 1
        return k

    def answer_probes(self) -> None:
        while True:
            try:
                data, addr = self.echo.recvfrom(64)
            except (BlockingIOError, InterruptedError):
                return
            if data[:4] == MAGIC:
                try:
                    self.echo.sendto(data, addr)
                except OSError:
                    pass

    def read_answers(self, now: float) -> None:
        while True:
            try:
                data = self.client.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error reported on the socket: that probe resolves as lost
            if len(data) != PROBE.size:
                continue
            magic, index, seq, sent = PROBE.unpack(data)
            if magic != MAGIC or index >= len(self.targets):
                continue
            if now - sent <= self.timeout:
                self.targets[index].answered.add(seq)

    def resolve(self, now: float) -> None:
        for t in self.targets:
            while t.pending:
                seq, sent = t.pending[0]
                if seq in t.answered:
                    t.answered.discard(seq)
                    t.acked += 1
                elif now - sent > self.timeout:
                    self.emit(f"L {t.name} {seq} {sent:.6f}")
                else:
                    break
                t.pending.popleft()
                t.resolved_through = sent
            if not t.pending:
                t.resolved_through = max(t.resolved_through, now - self.timeout)

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.echo, selectors.EVENT_READ, "echo")
        sel.register(self.client, selectors.EVENT_READ, "client")
        self.emit("READY")
        self.out.flush()
        start = time.monotonic()
        k = 0
        next_tick = start + TICK
        while True:
            now = time.monotonic()
            k = self.send_due(now, start, k)
            wake = min(start + k / self.rate, next_tick)
            for key, _ in sel.select(max(0.0, wake - time.monotonic())):
                if key.data == "echo":
                    self.answer_probes()
                else:
                    self.read_answers(time.monotonic())
            now = time.monotonic()
            if now >= next_tick:
                self.resolve(now)
                for t in self.targets:
                    self.emit(f"T {t.name} {t.resolved_through:.6f} {t.sent} {t.acked}")
                self.out.flush()
                next_tick += TICK
                if next_tick < now:
                    next_tick = now + TICK


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="lab.prober", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=7007)
    ap.add_argument("--rate", type=float, default=25.0, help="probes a second to each target")
    ap.add_argument("--timeout", type=float, default=1.0, help="seconds before an unanswered probe is lost")
    ap.add_argument("targets", nargs="*", metavar="NAME=IP[:PORT]")
    args = ap.parse_args(argv)
    try:
        Prober(parse_targets(args.targets, args.port), args.port, args.rate, args.timeout).run()
    except (KeyboardInterrupt, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
