"""Shared set-up for the tortie-bgpd namespace tests: hosts on a bridge, a cluster file, daemons by PID.

Every host is a namespace with `eth0` on one /24; the bridge lives in its own namespace, so nothing
touches the root namespace. Daemons run in the foreground and are started and killed by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lab.netns import Netns, NetnsSet
from proto.feed import EndOfSnapshot, FeedDecoder, FeedRoute, Frame, RouteUpdate, Withdraw
from runtime.control import ControlError, call

PREFIX = "tn"
BIN = Path(sys.executable).parent
T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1,
             diag: Callable[[], str] | None = None) -> T:
    """Poll `check` until it returns something truthy; fail with `what` (and diagnostics) at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            got = check()
            if got:
                return got
        except ControlError as exc:  # the daemon may be starting: its socket is not there yet
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f"\nlast error: {last_exc}" if last_exc else ""
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what}{extra}"
                              + (f"\n{diag()}" if diag else ""))
        # the daemons expose no event stream for these checks: pace the control-socket polls
        time.sleep(interval)


# ---------------------------------------------------------------- the cluster file


@dataclass
class NodeSpec:
    name: str
    address: str  # host address on the shared /24, no prefix length
    blocks: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    rr_cluster_id: str | None = None
    vxlan_address: str | None = None


def node_doc(n: NodeSpec, prefix_len: int = 24) -> dict[str, Any]:
    bgp: dict[str, Any] = {"ipv4Address": f"{n.address}/{prefix_len}"}
    if n.rr_cluster_id:
        bgp["routeReflectorClusterID"] = n.rr_cluster_id
    spec: dict[str, Any] = {"bgp": bgp}
    if n.vxlan_address:
        spec["ipv4VXLANTunnelAddr"] = n.vxlan_address
    return {"apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": n.name, "labels": dict(n.labels)}, "spec": spec}


def pool_doc(cidr: str, name: str = "pool-1", block_size: int = 26, vxlan: bool = False) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": block_size, "ipipMode": "Never",
                     "vxlanMode": "Always" if vxlan else "Never", "natOutgoing": False,
                     "nodeSelector": "all()"}}


def block_doc(node: str, cidr: str) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
            "metadata": {"name": f"{node}-{cidr.replace('.', '-').replace('/', '-')}"},
            "spec": {"node": node, "cidr": cidr, "state": "confirmed"}}


def bgp_config_doc(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
            "metadata": {"name": "default"}, "spec": {"asNumber": 64512, **spec}}


def peer_doc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name},
            "spec": spec}


def cluster_docs(nodes: Iterable[NodeSpec], pools: Iterable[dict[str, Any]],
                 config: dict[str, Any] | None = None,
                 peers: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    nodes = list(nodes)
    docs: list[dict[str, Any]] = [config or bgp_config_doc()]
    docs += [node_doc(n) for n in nodes]
    docs += list(pools)
    docs += list(peers)
    docs += [block_doc(n.name, b) for n in nodes for b in n.blocks]
    return docs


def write_cluster(path: Path, docs: list[dict[str, Any]]) -> None:
    """Atomically (temp file + rename), so the daemons' inotify watch never reads half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cluster-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    os.replace(tmp, path)


# ---------------------------------------------------------------- namespaces


@dataclass
class Host:
    name: str
    ns: Netns
    address: str


def bridged_hosts(nss: NetnsSet, names_addresses: Iterable[tuple[str, str]]) -> dict[str, Host]:
    """One namespace per host, `eth0` on a bridge that lives in its own namespace (addresses /24).

    The bridge namespace must be the first one of `nss` (add_host finds it there)."""
    assert not nss.namespaces, "bridged_hosts makes the bridge namespace first"
    br = nss.add("br")
    br.ip("link", "add", "br0", "type", "bridge")
    br.ip("link", "set", "br0", "up")
    hosts: dict[str, Host] = {}
    for name, address in names_addresses:
        add_host(nss, hosts, name, address)
    return hosts


def add_host(nss: NetnsSet, hosts: dict[str, Host], name: str, address: str) -> Host:
    """Another host on the existing bridge (the bridge namespace is the first one of `nss`)."""
    br = nss.namespaces[0]
    port = f"p{len(hosts)}"
    h = nss.add(name[:4])
    br.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.name)
    br.ip("link", "set", port, "master", "br0")
    br.ip("link", "set", port, "up")
    h.ip("link", "set", "eth0", "up")
    h.ip("addr", "add", f"{address}/24", "dev", "eth0")
    hosts[name] = Host(name, h, address)
    return hosts[name]


# ---------------------------------------------------------------- daemons


class Daemon:
    """One tortie daemon in one namespace, started in the foreground and stopped by its PID."""

    exe = "tortie-bgpd"
    sock_name = "bgpd.sock"

    def __init__(self, nss: NetnsSet, host: Host, config: Path, run_dir: Path, *extra: str) -> None:
        self.nss = nss
        self.host = host
        self.config = config
        self.run_dir = run_dir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = run_dir / f"{self.exe}.log"

    @property
    def sock(self) -> str:
        return str(self.run_dir / self.sock_name)

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = self.nss.spawn(self.host.ns, str(BIN / self.exe), "--config", str(self.config),
                                       "--node", self.host.name, "--run-dir", str(self.run_dir),
                                       "--log-level", "debug", *self.extra,
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.alive() and self.call("status"), 30, f"{self.exe} on {self.host.name} to answer",
                 diag=self.log_tail)

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"{self.exe} on {self.host.name} is not running\n{self.log_tail()}")
        return True

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        self.proc.wait(timeout=30)
        self.proc = None

    def call(self, method: str, **params: Any) -> Any:
        return call(self.sock, method, timeout=20, **params)

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- {self.log_path} (last {n} lines)\n" + "\n".join(lines[-n:])


class Bgpd(Daemon):
    exe = "tortie-bgpd"
    sock_name = "bgpd.sock"

    def status(self) -> dict[str, Any]:
        return self.call("status")  # type: ignore[no-any-return]

    def peer(self, address: str) -> dict[str, Any] | None:
        return next((p for p in self.status()["peers"] if p["address"] == address), None)

    def established(self, *addresses: str) -> bool:
        peers = {p["address"]: p for p in self.status()["peers"]}
        return all(a in peers and peers[a]["state"] == "Established" for a in addresses)

    def rib(self, **params: Any) -> list[dict[str, Any]]:
        return self.call("rib", **params)  # type: ignore[no-any-return]

    def best(self) -> dict[str, dict[str, Any]]:
        """prefix -> the best Loc-RIB entry."""
        return {r["prefix"]: r for r in self.rib() if r["best"]}

    def learned(self) -> dict[str, dict[str, Any]]:
        """prefix -> best entry, learned ones only (not this node's own blocks)."""
        return {p: r for p, r in self.best().items() if r["from"] != "local"}

    def neighbor(self, address: str) -> dict[str, Any]:
        return self.call("neighbors", peer=address)[0]  # type: ignore[no-any-return]

    def metrics(self, port: int = 9092) -> str:
        """The Prometheus text, fetched inside the namespace (each has its own loopback)."""
        return self.host.ns.exec("curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/metrics").stdout


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from Prometheus text, matched by name and a subset of its labels."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if not (head == name or head.startswith(name + "{")):
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


class Felixd(Daemon):
    exe = "tortie-felixd"
    sock_name = "felixd.sock"


def diag(*daemons: Daemon) -> Callable[[], str]:
    def text() -> str:
        parts = []
        for d in daemons:
            if isinstance(d, Bgpd):
                try:
                    parts.append(f"=== {d.host.name} status: {d.status()}")
                except (ControlError, OSError) as exc:
                    parts.append(f"=== {d.host.name} status: {exc}")
            parts.append(d.log_tail(30))
        return "\n".join(parts)

    return text


@dataclass
class Cluster:
    """Hosts on one bridge, each with a tortie-bgpd (and a tortie-felixd when asked for), all reading one
    cluster file unless a node was given its own."""

    nss: NetnsSet
    hosts: dict[str, Host]
    bgpd: dict[str, Bgpd]
    felixd: dict[str, Felixd]
    config: Path  # the shared cluster file
    tmp: Path

    def everyone(self) -> Callable[[], str]:
        """Diagnostics of every daemon, for a wait's failure message."""
        return diag(*self.bgpd.values(), *self.felixd.values())


@contextlib.contextmanager
def bridged_cluster(tmp: Path, nodes: Sequence[NodeSpec], docs: list[dict[str, Any]], *, felixd: bool = False,
                    start: bool = True, configs: Mapping[str, Path] | None = None) -> Iterator[Cluster]:
    """`nodes` as hosts on one bridge (bridged_hosts), `docs` written to tmp/cluster.yaml, and per node a
    bgpd (plus a felixd if `felixd`) with run directory tmp/run/<name>, reading the node's file in
    `configs` or else the shared one. With `start` the daemons are started node by node, bgpd first;
    without it the test starts them. Every namespace and daemon is gone on exit."""
    config = tmp / "cluster.yaml"
    write_cluster(config, docs)
    configs = configs or {}
    nss = NetnsSet(prefix=PREFIX)
    try:
        hosts = bridged_hosts(nss, [(n.name, n.address) for n in nodes])
        c = Cluster(nss, hosts, {}, {}, config, tmp)
        for n in nodes:
            run_dir, own = tmp / "run" / n.name, configs.get(n.name, config)
            c.bgpd[n.name] = Bgpd(nss, hosts[n.name], own, run_dir)
            if felixd:
                c.felixd[n.name] = Felixd(nss, hosts[n.name], own, run_dir)
            if start:
                c.bgpd[n.name].start()
                if felixd:
                    c.felixd[n.name].start()
        yield c
    finally:
        nss.close()


def ss_established(ns: Netns, port: int = 179) -> list[tuple[str, str]]:
    """(local, peer) address:port pairs of established TCP connections to or from `port`."""
    out = ns.exec("ss", "-Htn", "state", "established").stdout
    pairs = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        local, peer = cols[-2], cols[-1]
        if local.endswith(f":{port}") or peer.endswith(f":{port}"):
            pairs.append((local, peer))
    return pairs


class FeedWatcher:
    """Reads a bgpd's route feed in a thread and records every frame: a continuous witness of what the
    daemon told felixd (a withdrawal between two control-socket polls would still show up here)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.frames: list[Frame] = []
        self.routes: dict[str, FeedRoute] = {}
        self.withdrawn: list[str] = []
        self.snapshot_done = threading.Event()
        self.error: Exception | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        dec = FeedDecoder()
        try:
            while data := self.sock.recv(1 << 16):
                dec.receive_data(data)
                with self._lock:
                    for f in dec.frames():
                        self.frames.append(f)
                        if isinstance(f, RouteUpdate):
                            self.routes[f.route.prefix] = f.route
                        elif isinstance(f, Withdraw):
                            self.routes.pop(f.prefix, None)
                            self.withdrawn.append(f.prefix)
                        elif isinstance(f, EndOfSnapshot):
                            self.snapshot_done.set()
        except OSError as exc:
            self.error = exc

    def current(self) -> dict[str, FeedRoute]:
        with self._lock:
            return dict(self.routes)

    def withdrawals(self) -> list[str]:
        with self._lock:
            return list(self.withdrawn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)
