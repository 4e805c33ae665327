"""Shared set-up for the interop scenarios: one switched segment of namespaces per test module,
tortie-bgpd processes driven through their control socket, the real daemons through lab/daemons/,
and readers for the attributes each daemon's CLI shows for a route.

Layout of the segment (one bridge in its own namespace, every host joined to it by a veth):
tortie hosts t1 (10.77.0.1, fd77::1) and t2 (.2), the daemon's host d (.10). The cluster's pools are
192.168.0.0/16 (blocks /26) and fd00:77::/48 (blocks /122), so everything the daemons announce lies
inside a pool, which tortie requires before it accepts a learned prefix.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.daemons import RUNNERS, Daemon, DaemonError, DaemonNeighbor, Frr, GoBgp, Route, poll
from lab.netns import Netns, NetnsSet
from runtime.control import ControlError, call

PREFIX = "ti"
BIN = Path(sys.executable).parent
DAEMONS = ("bird16", "bird2", "gobgp", "frr")
POOL4, POOL6 = "192.168.0.0/16", "fd00:77::/48"

HOSTS = {"t1": 1, "t2": 2, "d": 10}


def v4(index: int) -> str:
    return f"10.77.0.{index}"


def v6(index: int) -> str:
    return f"fd77::{index:x}"


def require_runner(kind: str) -> type[Daemon]:
    cls = RUNNERS[kind]
    missing = cls.missing()
    if missing:
        pytest.skip(f"{kind}: missing {', '.join(missing)}")
    return cls


# ---------------------------------------------------------------- the segment


@dataclass
class Fabric:
    nsset: NetnsSet
    work: Path
    hosts: dict[str, Netns] = field(default_factory=dict)
    switch: Netns | None = None  # holds the bridge br0 joining every host

    @classmethod
    def build(cls, work: Path, labels: Sequence[str] = ("t1", "t2", "d")) -> Fabric:
        nsset = NetnsSet(prefix=PREFIX)
        fab = cls(nsset, work)
        try:
            sw = fab.switch = nsset.add("sw")
            sw.ip("link", "add", "br0", "type", "bridge")
            sw.ip("link", "set", "br0", "up")
            for label in labels:
                ns = nsset.add(label)
                idx = HOSTS[label]
                ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0")
                nsset.veth(ns, "eth0", sw, f"p{idx}")
                sw.ip("link", "set", f"p{idx}", "master", "br0")
                ns.ip("addr", "add", f"{v4(idx)}/24", "dev", "eth0")
                ns.ip("addr", "add", f"{v6(idx)}/64", "dev", "eth0", "nodad")
                fab.hosts[label] = ns
        except BaseException:
            nsset.close()
            raise
        return fab

    def close(self) -> None:
        self.nsset.close()


# ---------------------------------------------------------------- the cluster file


def node(name: str, index: int, *, asn: int | None = None, ipv6: bool = True, cluster_id: str | None = None,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    bgp: dict[str, Any] = {"ipv4Address": f"{v4(index)}/24"}
    if ipv6:
        bgp["ipv6Address"] = f"{v6(index)}/64"
    if asn is not None:
        bgp["asNumber"] = asn
    if cluster_id is not None:
        bgp["routeReflectorClusterID"] = cluster_id
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"kind": "Node", "metadata": meta, "spec": {"bgp": bgp}}


def block(node_name: str, cidr: str) -> dict[str, Any]:
    name = f"{node_name}-" + re.sub(r"[^0-9a-z]+", "-", cidr.lower()).strip("-")
    return {"kind": "BlockAffinity", "metadata": {"name": name},
            "spec": {"node": node_name, "cidr": cidr, "state": "confirmed"}}


def bgp_peer(name: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}


def cluster(*resources: dict[str, Any], asn: int = 64512, mesh: bool = True,
            config: dict[str, Any] | None = None) -> str:
    """The cluster file: the default BGPConfiguration (with `config`'s extra spec fields), the pools,
    then `resources`."""
    docs: list[dict[str, Any]] = [
        {"kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": asn, "nodeToNodeMeshEnabled": mesh, "logSeverityScreen": "Info", **(config or {})}},
        {"kind": "IPPool", "metadata": {"name": "pool4"},
         "spec": {"cidr": POOL4, "blockSize": 26, "vxlanMode": "Always", "ipipMode": "Never"}},
        {"kind": "IPPool", "metadata": {"name": "pool6"}, "spec": {"cidr": POOL6, "blockSize": 122}},
        *resources,
    ]
    return "".join("---\n" + yaml.safe_dump({"apiVersion": "projectcalico.org/v3", **d}, sort_keys=False)
                   for d in docs)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- tortie-bgpd


class Tortie:
    """One tortie-bgpd in one namespace; its run directory and log live in `work`."""

    def __init__(self, fabric: Fabric, label: str, node_name: str, config: Path, work: Path) -> None:
        self.fabric = fabric
        self.ns = fabric.hosts[label]
        self.node = node_name
        self.config = config
        self.run_dir = work / f"run-{node_name}"
        self.log = work / f"bgpd-{node_name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> str:
        return str(self.run_dir / "bgpd.sock")

    def start(self, fresh: bool = True, timeout: float = 30, wait: bool = True) -> None:
        """Start it; wait until `status` answers, or (not `wait`) only until the control socket exists."""
        if fresh and self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = self.fabric.nsset.spawn(
                self.ns, str(BIN / "tortie-bgpd"), "--config", str(self.config), "--node", self.node,
                "--run-dir", str(self.run_dir), "--metrics-port", "0", "--log-level", "debug",
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"tortie-bgpd {self.node} exited:\n{self.log_tail()}")
            if not wait:
                return Path(self.sock).exists()
            try:
                self.call("status", timeout=2)
                return True
            except ControlError:
                return False

        if not poll(up, timeout, 0.1):
            raise AssertionError(f"tortie-bgpd {self.node} did not answer in {timeout} s\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def call(self, method: str, timeout: float = 10, **params: Any) -> Any:
        return call(self.sock, method, timeout=timeout, **params)

    def peer(self, address: str) -> dict[str, Any]:
        for p in self.call("status")["peers"]:
            if ipaddress.ip_address(p["address"]) == ipaddress.ip_address(address):
                return p  # type: ignore[no-any-return]
        raise AssertionError(f"tortie {self.node} has no peer {address}")

    def neighbor(self, address: str) -> dict[str, Any]:
        return self.call("neighbors", peer=address)[0]  # type: ignore[no-any-return]

    def state(self, address: str) -> str:
        return str(self.peer(address)["state"])

    def rib(self, prefix: str | None = None, peer: str | None = None, direction: str = "in") -> list[dict[str, Any]]:
        params: dict[str, Any] = {"direction": direction}
        if prefix is not None:
            params["prefix"] = prefix
        if peer is not None:
            params["peer"] = peer
        return self.call("rib", timeout=60, **params)  # type: ignore[no-any-return]

    def routes_from(self, address: str) -> dict[str, dict[str, Any]]:
        """Prefix -> entry for what tortie holds from this peer (its Adj-RIB-In, without what import
        policy rejected)."""
        return {r["prefix"]: r for r in self.rib(peer=address) if not r.get("filtered")}

    def filtered_from(self, address: str) -> dict[str, dict[str, Any]]:
        """Prefix -> entry (with the reason) for what import policy rejected from this peer."""
        return {r["prefix"]: r for r in self.rib(peer=address) if r.get("filtered")}

    def wait_state(self, address: str, state: str = "Established", timeout: float = 40) -> None:
        if not poll(lambda: self.state(address) == state, timeout):
            raise AssertionError(f"tortie {self.node}: peer {address} not {state} after {timeout} s: "
                                 f"{self.peer(address)}")

    def wait_routes(self, address: str, prefixes: Sequence[str], timeout: float = 30,
                    present: bool = True) -> dict[str, dict[str, Any]]:
        want = {str(ipaddress.ip_network(p)) for p in prefixes}
        got: dict[str, dict[str, Any]] = {}

        def check() -> bool:
            nonlocal got
            got = self.routes_from(address)
            return want <= set(got) if present else not (want & set(got))

        if not poll(check, timeout):
            raise AssertionError(f"tortie {self.node}: from {address} {'missing' if present else 'still has'} "
                                 f"{sorted(want - set(got)) if present else sorted(want & set(got))} "
                                 f"after {timeout} s; has {sorted(got)}")
        return got

    def log_tail(self, n: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"

    def view(self) -> str:
        """What a failing test prints of tortie's side."""
        try:
            neighbors = json.dumps(self.call("neighbors"), indent=1, default=str)
        except (ControlError, OSError) as exc:
            neighbors = f"(no answer: {exc})"
        return f"=== tortie {self.node}: neighbors\n{neighbors}\n=== tortie {self.node}: log tail\n{self.log_tail()}"


# ---------------------------------------------------------------- daemons


def make_daemon(kind: str, fabric: Fabric, work: Path, *, asn: int, neighbors: Sequence[DaemonNeighbor],
                routes: Sequence[Route] = (), cluster_id: str | None = None, label: str = "d",
                **kwargs: Any) -> Daemon:
    cls = require_runner(kind)
    idx = HOSTS[label]
    own4 = v4(idx)
    if cls is GoBgp:
        # GoBGP announces exactly what it is given: give it its own address as next hop
        routes = [r if r.next_hop else Route(r.prefix, next_hop=own4 if r.family == "ipv4" else v6(idx),
                                             communities=r.communities, large_communities=r.large_communities,
                                             med=r.med, local_pref=r.local_pref) for r in routes]
    return cls(fabric.hosts[label], work / f"{kind}-{label}", router_id=own4, asn=asn, neighbors=neighbors,
               routes=routes, cluster_id=cluster_id, owner=fabric.nsset, **kwargs)


def kill9(daemon: Daemon) -> None:
    """Kill every process of a runner with SIGKILL (a crash, not a clean stop)."""
    for proc in list(daemon._procs):
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    daemon._procs.clear()
    daemon.pids.clear()


def daemon_view(daemon: Daemon) -> str:
    try:
        return daemon.diagnostics()
    except Exception as exc:  # the daemon may be the thing that died
        return f"=== {daemon.kind}: no diagnostics ({exc})"


@contextmanager
def both_views(*parts: Tortie | Daemon) -> Iterator[None]:
    """Any failure inside carries tortie's neighbors and the daemon's CLI view in its message."""
    try:
        yield
    except (AssertionError, DaemonError, ControlError) as exc:
        views = "\n".join(p.view() if isinstance(p, Tortie) else daemon_view(p) for p in parts)
        raise AssertionError(f"{exc}\n\n--- both sides ---\n{views}") from exc


def caps_text(daemon: Daemon, address: str) -> str:
    """The daemon's own words for the session's negotiated capabilities."""
    if isinstance(daemon, Frr):
        return daemon.vtysh(f"show bgp neighbors {address} json")
    if isinstance(daemon, GoBgp):
        return daemon.cli("neighbor", address)
    return daemon.cli("show", "protocols", "all", daemon._neighbor(address).ident)


@dataclass
class DaemonRoute:
    prefix: str
    next_hop: str
    as_path: list[int]
    originator_id: str | None
    cluster_list: list[str]
    raw: str


def daemon_route(daemon: Daemon, prefix: str) -> DaemonRoute | None:
    """The daemon's best route for `prefix` (None when it has none), read from its CLI."""
    net = str(ipaddress.ip_network(prefix))
    if isinstance(daemon, Frr):
        fam = "ipv6" if ":" in net else "ipv4"
        out = daemon.vtysh(f"show bgp {fam} unicast {net} json")
        try:
            info = json.loads(out)
        except json.JSONDecodeError:
            return None
        paths = info.get("paths") or []
        if not paths:
            return None
        best = next((p for p in paths if p.get("bestpath", {}).get("overall")), paths[0])
        segs = str(best.get("aspath", {}).get("string", "")).replace("Local", "").split()
        nh = (best.get("nexthops") or [{}])[0].get("ip", "")
        return DaemonRoute(net, nh, [int(a) for a in segs if a.isdigit()], best.get("originatorId"),
                           list(best.get("clusterList", {}).get("list", []) or []), out)
    if isinstance(daemon, GoBgp):
        fam = "ipv6" if ":" in net else "ipv4"
        out = daemon.cli("global", "rib", "-a", fam, net, "-j")
        try:
            table = json.loads(out) if out.strip() else {}
        except json.JSONDecodeError:
            return None
        paths = next(iter(table.values()), []) if isinstance(table, dict) else []
        if not paths:
            return None
        best = next((p for p in paths if p.get("best")), paths[0])
        as_path: list[int] = []
        nh, orig, clist = "", None, []
        for a in best.get("attrs", []):
            t = a.get("type")
            if t == 2:
                for seg in a.get("as_paths", []):
                    as_path += seg.get("asns", [])
            elif t == 3:
                nh = a.get("nexthop", "")
            elif t == 14:
                nh = a.get("nexthop", nh)
            elif t == 9:
                orig = a.get("value")
            elif t == 10:
                clist = list(a.get("value", []))
        return DaemonRoute(net, nh, as_path, orig, clist, out)
    out = daemon.cli("show", "route", "for", net, "all")
    if net.split("/")[0] not in out and net not in out:
        return None
    m_nh = re.search(r"BGP\.next_hop:\s*(\S+)", out)
    m_as = re.search(r"BGP\.as_path:([^\n]*)", out)
    m_or = re.search(r"BGP\.originator_id:\s*(\S+)", out)
    m_cl = re.search(r"BGP\.cluster_list:([^\n]*)", out)
    return DaemonRoute(net, m_nh.group(1) if m_nh else "",
                       [int(a) for a in (m_as.group(1).split() if m_as else []) if a.isdigit()],
                       m_or.group(1) if m_or else None, m_cl.group(1).split() if m_cl else [], out)


def wait_daemon_route(daemon: Daemon, prefix: str, check: Callable[[DaemonRoute], bool] = lambda r: True,
                      timeout: float = 30) -> DaemonRoute:
    seen: list[DaemonRoute | None] = [None]

    def ok() -> bool:
        seen[0] = daemon_route(daemon, prefix)
        return seen[0] is not None and check(seen[0])

    if not poll(ok, timeout):
        raise AssertionError(f"{daemon.kind}: route {prefix} not as expected after {timeout} s: {seen[0]}")
    assert seen[0] is not None
    return seen[0]


# ---------------------------------------------------------------- one tortie, one daemon

T1_BLOCK = "192.168.1.0/26"
D_ROUTES = ("192.168.20.0/24", "192.168.21.0/24")  # the daemon's routes, inside the pool


def peer_cluster(*, tortie_as: int = 64512, peer_as: int = 64512, **peer_spec: Any) -> str:
    """tortie node t1 with one block, and the daemon (10.77.0.10) as a global BGPPeer."""
    spec = {"peerIP": v4(10), "asNumber": peer_as, **peer_spec}
    return cluster(node("t1", 1), block("t1", T1_BLOCK), bgp_peer("daemon", **spec), asn=tortie_as)


@dataclass
class Pair:
    tortie: Tortie
    daemon: Daemon
    config: Path

    def views(self) -> Any:
        return both_views(self.tortie, self.daemon)


@contextmanager
def pair(kind: str, fabric: Fabric, work: Path, cluster_text: str, neighbor: DaemonNeighbor,
         routes: Sequence[Route] = tuple(Route(p) for p in D_ROUTES), *, asn: int = 64512,
         start_tortie: bool = True, extra_neighbors: Sequence[DaemonNeighbor] = (),
         **daemon_kwargs: Any) -> Iterator[Pair]:
    """tortie on t1 and the daemon on d (with `extra_neighbors` beside tortie), stopped (by PID) whatever
    happens inside."""
    cfg = work / "cluster.yaml"
    write_atomic(cfg, cluster_text)
    tortie = Tortie(fabric, "t1", "t1", cfg, work)
    daemon = make_daemon(kind, fabric, work, asn=asn, neighbors=[neighbor, *extra_neighbors], routes=routes,
                         **daemon_kwargs)
    try:
        daemon.start()
        if start_tortie:
            tortie.start()
        yield Pair(tortie, daemon, cfg)
    finally:
        tortie.stop()
        daemon.stop()
