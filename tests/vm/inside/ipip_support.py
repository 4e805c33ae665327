"""Two nodes and their pods in namespaces, and an underlay capture, for the in-VM IP-in-IP tests.

Two node namespaces are joined by a veth (the underlay, `eth0` on each side); each node has a pod
namespace behind a second veth wired as Calico wires pods (a /32 on the pod's eth0, default via
169.254.1.1, a `/32 dev cali0 scope link` route on the node). What routes the nodes' blocks to each
other is up to the test.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from lab.netns import Netns, NetnsSet, run

PREFIX = "tv"
CAPTURE_READY_SECONDS = 30
CAPTURE_DONE_SECONDS = 30


@dataclass(frozen=True)
class Node:
    ns: Netns
    pod: Netns
    address: str  # underlay address of the node
    block: str  # its pod block, routed to it by the other node
    tunnel: str  # tunl0 address: first address of its block, as Calico chooses it
    pod_ip: str


@dataclass(frozen=True)
class Cluster:
    a: Node
    b: Node


def load_ipip() -> None:
    proc = run(["modprobe", "ipip"], check=False)
    assert proc.returncode == 0, f"modprobe ipip: {proc.stderr}"


def _add_pod(nss: NetnsSet, node: Netns, pod_ip: str) -> Netns:
    """A pod as Calico wires one; the gateway's MAC is pinned where Calico relies on proxy ARP."""
    pod = nss.add("pod")
    node.ip("link", "add", "cali0", "type", "veth", "peer", "name", "eth0", "netns", pod.name)
    node.ip("link", "set", "cali0", "up")
    pod.ip("link", "set", "eth0", "up")
    pod.ip("addr", "add", f"{pod_ip}/32", "dev", "eth0")
    mac = node.ip("-br", "link", "show", "cali0").stdout.split()[2]
    pod.ip("neigh", "add", "169.254.1.1", "lladdr", mac, "dev", "eth0", "nud", "permanent")
    pod.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    pod.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    node.ip("route", "add", f"{pod_ip}/32", "dev", "cali0", "scope", "link")
    return pod


def _node(nss: NetnsSet, ns: Netns, address: str, block: str) -> Node:
    base = block.split("/")[0].rsplit(".", 1)[0]
    node = Node(ns=ns, pod=_add_pod(nss, ns, f"{base}.2"), address=address, block=block,
                tunnel=f"{base}.0", pod_ip=f"{base}.2")
    ns.ip("addr", "add", f"{address}/24", "dev", "eth0")
    ns.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
    return node


@contextmanager
def two_nodes() -> Iterator[Cluster]:
    with NetnsSet(prefix=PREFIX) as nss:
        a_ns, b_ns = nss.add("a"), nss.add("b")
        nss.veth(a_ns, "eth0", b_ns, "eth0")
        yield Cluster(_node(nss, a_ns, "10.30.0.1", "192.168.1.0/26"),
                      _node(nss, b_ns, "10.30.0.2", "192.168.2.0/26"))


def ping(src: Netns, dst: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    return src.exec("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "5", dst, check=False, timeout=60)


def assert_all_received(proc: subprocess.CompletedProcess[str], count: int) -> None:
    assert re.search(rf"\b{count} packets transmitted, {count} received", proc.stdout), \
        proc.stdout + proc.stderr


class Capture:
    """tcpdump on a namespace's interface, ready before traffic starts, ended by its packet count."""

    def __init__(self, ns: Netns, dev: str, count: int, bpf: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "tcpdump", "-i", dev, "-n", "-l", "--immediate-mode",
             "-c", str(count), bpf],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        assert self.proc.stderr is not None
        # tcpdump says "listening on ..." once its socket is bound and filtered. Raw reads: a
        # buffered readline could hold that line back while select() waits on an empty pipe.
        fd = self.proc.stderr.fileno()
        said = b""
        deadline = time.monotonic() + CAPTURE_READY_SECONDS
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"listening on" not in said and time.monotonic() < deadline:
                if sel.select(timeout=deadline - time.monotonic()):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        break
                    said += chunk
        if b"listening on" not in said:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"tcpdump did not start: {said.decode(errors='replace')}")

    def lines(self) -> list[str]:
        try:
            out, _ = self.proc.communicate(timeout=CAPTURE_DONE_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            pytest.fail(f"tcpdump never saw its packets; it saw:\n{out.decode(errors='replace')}")
        return [line for line in out.decode(errors="replace").splitlines() if line.strip()]


def encapsulated(line: str) -> bool:
    """A tcpdump line of an IP-in-IP packet: `<time> IP <node> > <node>: IP <pod> > <pod>: ...`."""
    return line.split(": ", 1)[1].startswith("IP ")


def assert_pod_ping_encapsulated(a: Node, b: Node, count: int = 3) -> None:
    """Every request and every reply of a pod-to-pod ping crosses the underlay as IP protocol 4."""
    capture = Capture(b.ns, "eth0", count=2 * count, bpf="icmp or ip proto 4")
    assert_all_received(ping(a.pod, b.pod_ip, count), count)
    lines = capture.lines()
    requests = f"IP {a.address} > {b.address}: IP {a.pod_ip} > {b.pod_ip}: ICMP echo request"
    replies = f"IP {b.address} > {a.address}: IP {b.pod_ip} > {a.pod_ip}: ICMP echo reply"
    assert sum(requests in line for line in lines) == count, "\n".join(lines)
    assert sum(replies in line for line in lines) == count, "\n".join(lines)
