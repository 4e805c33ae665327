"""Operating the real daemons: sd_notify with a systemd stand-in, readiness transitions, and every
metric family of docs/metrics.md appearing and moving. Two nodes in two namespaces on a veth."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.netns import Netns, NetnsSet
from runtime.control import ControlError, call
from tests.conftest import require_root
from tests.unit.test_metrics_doc import documented

BIN = Path(sys.executable).parent
HEAD = "apiVersion: projectcalico.org/v3\n"


def cluster(extra: str = "") -> str:
    docs = [
        f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n",
        f"{HEAD}kind: Node\nmetadata: {{name: node-a}}\nspec: {{bgp: {{ipv4Address: 10.40.0.1/24}}}}\n",
        f"{HEAD}kind: Node\nmetadata: {{name: node-b}}\nspec: {{bgp: {{ipv4Address: 10.40.0.2/24}}}}\n",
        # explicit peers so that keepalives come every 3 s (hold 9 s) and the counters move quickly
        f"{HEAD}kind: BGPPeer\nmetadata: {{name: a-to-b}}\nspec: {{node: node-a, peerIP: 10.40.0.2, asNumber: 64512, keepaliveTime: 3s}}\n",
        f"{HEAD}kind: BGPPeer\nmetadata: {{name: b-to-a}}\nspec: {{node: node-b, peerIP: 10.40.0.1, asNumber: 64512, keepaliveTime: 3s}}\n",
        f"{HEAD}kind: IPPool\nmetadata: {{name: pool}}\nspec: {{cidr: 192.168.0.0/16, vxlanMode: Always, natOutgoing: true}}\n",
        f"{HEAD}kind: BlockAffinity\nmetadata: {{name: a}}\nspec: {{node: node-a, cidr: 192.168.1.0/26}}\n",
        f"{HEAD}kind: BlockAffinity\nmetadata: {{name: b}}\nspec: {{node: node-b, cidr: 192.168.2.0/26}}\n",
    ]
    return "---\n".join(docs) + (f"---\n{extra}" if extra else "")


# node-b also announces a block of a pool that node-a's cluster file does not have: node-a rejects it
B_EXTRA = (f"{HEAD}kind: IPPool\nmetadata: {{name: other}}\nspec: {{cidr: 172.16.0.0/16}}\n---\n"
           f"{HEAD}kind: BlockAffinity\nmetadata: {{name: b2}}\nspec: {{node: node-b, cidr: 172.16.0.0/26}}\n")


class Notify:
    """The systemd side: a datagram socket drained by a thread (as systemd would), so the daemon's
    non-blocking sends never find a full queue and drop a message the test waits for."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path
        self.seen: list[str] = []
        self.cond = threading.Condition()
        self.sock.settimeout(0.2)
        self.closed = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while not self.closed:
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.cond:
                self.seen.append(msg)
                self.cond.notify_all()

    def wait(self, pred: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for msg in self.seen:
                    if pred(msg):
                        self.seen.remove(msg)
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no sd_notify message {what} within {timeout}s; got {self.seen[-20:]}")
                self.cond.wait(left)

    def close(self) -> None:
        self.closed = True
        self.thread.join(timeout=5)
        self.sock.close()


@dataclass
class Node:
    name: str
    ns: Netns
    run_dir: Path
    config: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    notify: dict[str, Notify] = field(default_factory=dict)


def metrics_of(node: Node, port: int) -> str:
    out = node.ns.exec(sys.executable, "-c", f"import urllib.request;print(urllib.request.urlopen("
                       f"'http://127.0.0.1:{port}/metrics',timeout=5).read().decode())", timeout=20)
    return out.stdout


def http_status(node: Node, port: int, path: str) -> int:
    code = ("import urllib.request,urllib.error\ntry:\n"
            f" print(urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=5).status)\n"
            "except urllib.error.HTTPError as e:\n print(e.code)\n")
    return int(node.ns.exec(sys.executable, "-c", code, timeout=20).stdout.strip())


def value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def families(text: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            name = m.group(1)
            out.add(name if m.group(2) != "counter" or name.endswith("_total") else name + "_total")
    return out


def until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = pred()
            if got:
                return got
        except (ControlError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)  # polling a daemon's control socket: no event to wait on


def start(nss: NetnsSet, node: Node, daemon: str, tmp: Path, *extra: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp / f"notify-{node.name}-{daemon}")
    sock.bind(path)
    node.notify[daemon] = Notify(sock, path)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    log = open(tmp / f"{node.name}-{daemon}.log", "ab")  # noqa: SIM115 - closed with the process
    node.procs[daemon] = nss.spawn(node.ns, str(BIN / f"tortie-{daemon}"), "--config", str(node.config),
                                   "--node", node.name, "--run-dir", str(node.run_dir), *extra,
                                   stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, Path, NetnsSet]]:
    require_root()
    tmp = tmp_path_factory.mktemp("ops")
    with NetnsSet(prefix="tops") as nss:
        a_ns, b_ns = nss.add("a"), nss.add("b")
        nss.veth(a_ns, "eth0", b_ns, "eth0")
        a_ns.ip("addr", "add", "10.40.0.1/24", "dev", "eth0")
        b_ns.ip("addr", "add", "10.40.0.2/24", "dev", "eth0")
        (tmp / "a.yaml").write_text(cluster())
        (tmp / "b.yaml").write_text(cluster(B_EXTRA))
        a = Node("node-a", a_ns, tmp / "run-a", tmp / "a.yaml")
        b = Node("node-b", b_ns, tmp / "run-b", tmp / "b.yaml")
        start(nss, a, "bgpd", tmp)
        start(nss, a, "felixd", tmp, "--resync-interval", "1")
        try:
            yield a, b, tmp, nss
        finally:
            for n in (a, b):
                for d in n.notify.values():
                    d.close()


def test_sd_notify_readiness_and_metrics(two_nodes: tuple[Node, Node, Path, NetnsSet]) -> None:
    a, b, tmp, nss = two_nodes
    # both of node-a's daemons tell systemd they are ready, with a status line
    ready = a.notify["bgpd"].wait(lambda m: "READY=1" in m, 30, "READY from bgpd")
    assert "STATUS=" in ready
    a.notify["felixd"].wait(lambda m: "READY=1" in m, 30, "READY from felixd")
    # watchdog pings come from the event loop, repeatedly
    for _ in range(3):
        a.notify["bgpd"].wait(lambda m: m == "WATCHDOG=1", 10, "WATCHDOG from bgpd")
    # the only peer is down: in its first 30 s bgpd is not ready; felixd is (first reconcile done)
    assert http_status(a, 9092, "/readiness") == 503
    assert http_status(a, 9092, "/liveness") == 200
    assert http_status(a, 9091, "/readiness") == 200

    # node-b comes up: the session is Established and node-a becomes ready
    start(nss, b, "bgpd", tmp)
    start(nss, b, "felixd", tmp)
    try:
        until(lambda: all(p["state"] == "Established"
                          for p in call(str(a.run_dir / "bgpd.sock"), "status")["peers"]), 60, "session up")
        until(lambda: http_status(a, 9092, "/readiness") == 200, 30, "bgpd ready")

        # felixd on node-a programs node-b's block through VXLAN
        until(lambda: "192.168.2.0/26 via 192.168.2.0 dev vxlan.calico" in a.ns.ip("route").stdout, 30,
              "VXLAN route on node-a")

        # something for every labelled family: a rejected prefix (node-b's 172.16 block is outside
        # node-a's pools), a NOTIFICATION each way, a configuration reload, drift for felixd to repair
        until(lambda: call(str(a.run_dir / "bgpd.sock"), "neighbors")[0]["prefixes"]["rejected"], 30,
              "a rejected prefix")
        a.ns.ip("route", "del", "192.168.2.0/26")
        until(lambda: "192.168.2.0/26" in a.ns.ip("route").stdout, 30, "drift repaired")
        call(str(a.run_dir / "bgpd.sock"), "shutdown", peer="10.40.0.2", message="maintenance")
        until(lambda: call(str(b.run_dir / "bgpd.sock"), "neighbors")[0]["last_notification_received"], 30,
              "Cease seen by node-b")
        call(str(a.run_dir / "bgpd.sock"), "enable", peer="10.40.0.2")
        until(lambda: all(p["state"] == "Established"
                          for p in call(str(a.run_dir / "bgpd.sock"), "status")["peers"]), 60, "session back")

        # reload: RELOADING=1 with a timestamp, then READY=1 again; counted as a reload
        a.procs["bgpd"].send_signal(signal.SIGHUP)
        msg = a.notify["bgpd"].wait(lambda m: "RELOADING=1" in m, 10, "RELOADING")
        assert re.search(r"MONOTONIC_USEC=\d+", msg)
        a.notify["bgpd"].wait(lambda m: "READY=1" in m, 10, "READY after reload")
        (tmp / "a.yaml").write_text(cluster() + "# touched\n")  # the watch notices an edit too
        until(lambda: value(metrics_of(a, 9092), "tortie_bgp_config_reloads_total", result="ok"), 30,
              "a reload counted")

        bgp1 = metrics_of(a, 9092)
        felix1 = metrics_of(a, 9091)
        doc = documented()
        want_bgp = {n for n in doc if n.startswith("tortie_bgp_")}
        want_felix = {n for n in doc if n.startswith("tortie_felix_")}
        assert want_bgp - families(bgp1) == set()
        assert want_felix - families(felix1) == set()
        # and they move: keepalives keep coming, felixd keeps resyncing
        k1 = value(bgp1, "tortie_bgp_messages_received_total", peer="10.40.0.2", type="keepalive") or 0
        r1 = value(felix1, "tortie_felix_resyncs_total", trigger="periodic") or 0
        until(lambda: (value(metrics_of(a, 9092), "tortie_bgp_messages_received_total", peer="10.40.0.2",
                             type="keepalive") or 0) > k1, 30, "keepalive counter moving")
        until(lambda: (value(metrics_of(a, 9091), "tortie_felix_resyncs_total", trigger="periodic") or 0) > r1,
              30, "resync counter moving")
        assert value(bgp1, "tortie_bgp_session_state", peer="10.40.0.2", state="established") == 1
        # `shutdown` of a session: Cease/2 wrapped in a Hard Reset, the N bit being negotiated (RFC 8538)
        assert value(bgp1, "tortie_bgp_notifications_sent_total", peer="10.40.0.2", code="6", subcode="9") == 1
        assert (value(bgp1, "tortie_bgp_prefixes_rejected_total", peer="10.40.0.2") or 0) >= 1
        assert (value(felix1, "tortie_felix_drift_repairs_total", kind="route") or 0) >= 1
        assert value(felix1, "tortie_felix_routes", mode="vxlan") == 1
        assert value(felix1, "tortie_felix_feed_connected") == 1
        assert value(felix1, "tortie_felix_kernel_feature_missing", feature="ipip") == 0

        # SIGTERM: STOPPING=1, and felixd leaves the kernel as it is
        a.procs["felixd"].send_signal(signal.SIGTERM)
        a.notify["felixd"].wait(lambda m: "STOPPING=1" in m, 15, "STOPPING from felixd")
        assert a.procs["felixd"].wait(timeout=15) == 0
        assert "192.168.2.0/26 via 192.168.2.0 dev vxlan.calico" in a.ns.ip("route").stdout
        a.procs["bgpd"].send_signal(signal.SIGTERM)
        a.notify["bgpd"].wait(lambda m: "STOPPING=1" in m, 15, "STOPPING from bgpd")
        assert a.procs["bgpd"].wait(timeout=15) == 0
        # SIGTERM is a graceful restart (RFC 8538): the marker stays, the next start is a restarting speaker
        assert (a.run_dir / "bgpd.running").exists()
    finally:
        for proc in (*b.procs.values(), *a.procs.values()):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
