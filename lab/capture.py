"""VXLAN on the wire: tcpdump on a fabric port while pods talk, each packet decoded down to the pods'
own addresses inside, summarised per direction (outer addresses, UDP port, VNI, inner addresses).

The capture is ready before traffic starts (tcpdump's "listening on" line) and ended by SIGINT once the
traffic is done; tcpdump then flushes what it saw.
"""

from __future__ import annotations

import ipaddress
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from lab.netns import Netns
from lab.results import CaptureSummary, Flow

READY_SECONDS = 30.0
QUIET_SECONDS = 0.5


def _packets(text: str) -> list[bytes]:
    """The packets of `tcpdump -x` output (network layer onwards)."""
    out: list[bytes] = []
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("0x") and ":" in stripped and current is not None:
            current.append(stripped.split(":", 1)[1].replace(" ", ""))
        else:
            if current:
                out.append(bytes.fromhex("".join(current)))
            current = [] if stripped else None
    if current:
        out.append(bytes.fromhex("".join(current)))
    return out


def _ip_header(raw: bytes) -> tuple[str, str, int, int] | None:
    """(source, destination, protocol, header length) of an IPv4 or IPv6 packet without extension
    headers."""
    if len(raw) >= 20 and raw[0] >> 4 == 4:
        ihl = (raw[0] & 0x0F) * 4
        return str(ipaddress.IPv4Address(raw[12:16])), str(ipaddress.IPv4Address(raw[16:20])), raw[9], ihl
    if len(raw) >= 40 and raw[0] >> 4 == 6:
        return str(ipaddress.IPv6Address(raw[8:24])), str(ipaddress.IPv6Address(raw[24:40])), raw[6], 40
    return None


def decode_vxlan(raw: bytes) -> Flow | None:
    """A VXLAN packet's outer and inner addresses; None when it is not UDP carrying VXLAN."""
    outer = _ip_header(raw)
    if outer is None or outer[2] != 17:
        return None
    src, dst, _, hlen = outer
    udp = raw[hlen:hlen + 8]
    vxlan = raw[hlen + 8:hlen + 16]
    if len(udp) < 8 or len(vxlan) < 8 or not vxlan[0] & 0x08:
        return None
    vni = int.from_bytes(vxlan[4:7], "big")
    frame = raw[hlen + 16:]
    ethertype = int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0
    inner = _ip_header(frame[14:]) if ethertype in (0x0800, 0x86DD) else None
    return Flow(src, dst, int.from_bytes(udp[2:4], "big"), vni, inner[0] if inner else "?",
                inner[1] if inner else "?")


def summarise(packets: list[bytes]) -> tuple[int, list[Flow]]:
    flows: dict[tuple[str, str, int, int, str, str], Flow] = {}
    seen = 0
    for raw in packets:
        flow = decode_vxlan(raw)
        if flow is None:
            continue
        seen += 1
        key = (flow.outer_src, flow.outer_dst, flow.dport, flow.vni, flow.inner_src, flow.inner_dst)
        flows.setdefault(key, flow).packets += 1
    return seen, list(flows.values())


def capture(ns: Netns, dev: str, bpf: str, traffic: Callable[[], None], where: str,
            quiet: float = QUIET_SECONDS) -> CaptureSummary:
    """Capture on `dev` in `ns` while `traffic()` runs, and until tcpdump has printed nothing new for
    `quiet` seconds (packets still on their way are not cut off)."""
    summary = CaptureSummary(where=where, bpf=bpf)
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "tcpdump", "-i", dev, "-nn", "-l", "-x",
                             "--immediate-mode", bpf], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    last = [time.monotonic()]

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace"))
            last[0] = time.monotonic()

    reader = threading.Thread(target=read, name="tcpdump-reader", daemon=True)
    try:
        said = b""
        deadline = time.monotonic() + READY_SECONDS
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr.fileno(), selectors.EVENT_READ)
            while b"listening on" not in said and time.monotonic() < deadline:
                if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    if not chunk:
                        break
                    said += chunk
        if b"listening on" not in said:
            summary.problem = f"tcpdump did not start: {said.decode(errors='replace').strip()[:200]}"
            return summary
        reader.start()
        traffic()
        end = time.monotonic() + READY_SECONDS
        while time.monotonic() < end and time.monotonic() - last[0] < quiet:
            time.sleep(0.05)  # polling for tcpdump's output to go quiet
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if reader.is_alive() or reader.ident is not None:
            reader.join(timeout=15)
        proc.stdout.close()
        proc.stderr.close()
    summary.packets, summary.flows = summarise(_packets("".join(lines)))
    if not summary.packets:
        summary.problem = "no VXLAN packet seen"
    return summary
