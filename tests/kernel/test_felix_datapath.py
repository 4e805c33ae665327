"""Packets through what felixd programs: natOutgoing masquerade, and pod-to-pod over vxlan.calico."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from felixd.reconcile import Reconciler
from felixd.state import (
    DesiredState,
    FdbEntry,
    Mode,
    NatOutgoing,
    Neighbour,
    RouteEntry,
    RouteKind,
    Sysctl,
    VxlanDevice,
    route,
    route_map,
)
from lab.netns import Netns, NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.felix_support import PREFIX, add_pod, two_hosts

LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
while True:
    c, peer = s.accept(); print(peer[0], flush=True); c.close()
"""


@pytest.fixture
def nss() -> Iterator[NetnsSet]:
    require_root()
    require_tools("ip", "nft", "ping")
    with NetnsSet(prefix=PREFIX) as s:
        yield s


class Listener:
    """A TCP listener in a namespace that reports each connecting peer's address."""

    def __init__(self, nss: NetnsSet, ns: Netns, port: int) -> None:
        self.proc = nss.spawn(ns, sys.executable, "-c", LISTENER, str(port),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"ready"

    def next_peer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode().strip()


def connect(ns: Netns, ip: str, port: int) -> None:
    code = f"import socket; socket.create_connection(({ip!r}, {port}), timeout=5).close()"
    ns.exec(sys.executable, "-c", code, timeout=15)


def workload(host_if: str, ip: str) -> tuple[RouteEntry, frozenset[Sysctl]]:
    return (route(f"{ip}/32", dev=host_if, scope_link=True, mode=Mode.WORKLOAD),
            frozenset({Sysctl(f"net/ipv4/conf/{host_if}/proxy_arp", "1"),
                       Sysctl(f"net/ipv4/neigh/{host_if}/proxy_delay", "0"),
                       Sysctl("net/ipv4/ip_forward", "1")}))


async def test_nat_outgoing_masquerades_only_traffic_leaving_the_pools(nss: NetnsSet) -> None:
    node, ext = two_hosts(nss)  # node 172.31.0.1, "external" 172.31.0.2
    node.ns.ip("route", "add", "default", "via", ext.address)  # proxy ARP answers for routed addresses
    # the outside knows the way back to the pods, so an unmasqueraded source still gets its answer
    ext.ns.ip("route", "add", "10.244.0.0/15", "via", node.address)
    pod_nat = add_pod(nss, node.ns, "calia", "10.244.0.5")  # pool 10.244.0.0/16, natOutgoing
    pod_other = add_pod(nss, node.ns, "calib", "10.245.0.7")  # pool 10.245.0.0/16, no natOutgoing
    ra, sa = workload("calia", "10.244.0.5")
    rb, sb = workload("calib", "10.245.0.7")
    desired = DesiredState(
        routes=route_map(ra, rb),
        nat=NatOutgoing(nat_pools_v4=frozenset({"10.244.0.0/16"}),
                        all_pools_v4=frozenset({"10.244.0.0/16", "10.245.0.0/16"})),
        sysctls=sa | sb)
    async with Reconciler(node.ns.name) as rec:
        res = await rec.reconcile(desired)
        assert res.route_errors == [] and res.sysctl_errors == [] and res.nat_changes == 1
        ext_listener = Listener(nss, ext.ns, 8080)
        connect(pod_nat, ext.address, 8080)
        assert ext_listener.next_peer() == node.address  # masqueraded to the node's address
        connect(pod_other, ext.address, 8080)
        assert ext_listener.next_peer() == "10.245.0.7"  # no natOutgoing on its pool: source kept

        pod_listener = Listener(nss, pod_other, 8081)
        connect(pod_nat, "10.245.0.7", 8081)
        assert pod_listener.next_peer() == "10.244.0.5"  # pool to pool: never masqueraded

        # the pool loses natOutgoing: the set is updated in place and traffic keeps its source
        no_nat = dataclasses.replace(desired, nat=dataclasses.replace(desired.nat, nat_pools_v4=frozenset()))
        assert (await rec.reconcile(no_nat)).nat_changes == 1
        node.ns.exec("conntrack", "-F", check=False)  # an established NAT mapping would outlive the rule
        connect(pod_nat, ext.address, 8080)
        assert ext_listener.next_peer() == "10.244.0.5"
        assert (await rec.reconcile(no_nat)).changes == 0


def vxlan_host_state(me: str, my_addr: str, my_block: str, my_vtep: str, my_mac: str, pod_ip: str,
                     peer_addr: str, peer_block: str, peer_vtep: str, peer_mac: str) -> DesiredState:
    wl, sysctls = workload(f"cali{me}", pod_ip)
    rs = [
        route(peer_block, gateway=peer_vtep, dev="vxlan.calico", onlink=True, mode=Mode.VXLAN),
        route(my_block, kind=RouteKind.BLACKHOLE, mode=Mode.LOCAL_BLOCK),
        wl,
    ]
    return DesiredState(
        routes=route_map(*rs),
        vxlan=VxlanDevice(local=my_addr, mac=my_mac, address=my_vtep, mtu=1450, parent="eth0"),
        neighbours=frozenset({Neighbour("vxlan.calico", peer_vtep, peer_mac)}),
        fdb=frozenset({FdbEntry("vxlan.calico", peer_mac, peer_addr)}),
        sysctls=sysctls)


def tx_packets(ns: Netns, dev: str) -> int:
    out = ns.ip("-s", "link", "show", dev).stdout
    m = re.search(r"TX:.*\n\s*(\d+)\s+(\d+)", out)
    assert m, out
    return int(m.group(2))


async def test_vxlan_pod_to_pod_across_two_hosts(nss: NetnsSet) -> None:
    a, b = two_hosts(nss)
    pod_a = add_pod(nss, a.ns, "calia", "10.244.0.5")
    pod_b = add_pod(nss, b.ns, "calib", "10.244.0.70")
    a.ns.ip("route", "add", "default", "via", b.address)  # proxy ARP needs a route for 169.254.1.1
    b.ns.ip("route", "add", "default", "via", a.address)
    mac_a, mac_b = "66:0a:00:00:00:01", "66:0b:00:00:00:02"
    state_a = vxlan_host_state("a", a.address, "10.244.0.0/26", "10.244.0.1", mac_a, "10.244.0.5",
                               b.address, "10.244.0.64/26", "10.244.0.65", mac_b)
    state_b = vxlan_host_state("b", b.address, "10.244.0.64/26", "10.244.0.65", mac_b, "10.244.0.70",
                               a.address, "10.244.0.0/26", "10.244.0.1", mac_a)
    async with Reconciler(a.ns.name) as ra, Reconciler(b.ns.name) as rb:
        for rec, st in ((ra, state_a), (rb, state_b)):
            res = await rec.reconcile(st)
            assert res.route_errors == [] and res.sysctl_errors == []
        before = tx_packets(a.ns, "vxlan.calico")
        deadline = time.monotonic() + 10
        while True:  # the first ping may race proxy-ARP set-up; poll with a deadline
            ok = pod_a.exec("ping", "-c", "1", "-W", "1", "10.244.0.70", check=False).returncode == 0
            if ok or time.monotonic() > deadline:
                break
        assert ok, "pod A cannot reach pod B across vxlan.calico"
        assert pod_b.exec("ping", "-c", "2", "-W", "1", "10.244.0.5", check=False).returncode == 0
        assert tx_packets(a.ns, "vxlan.calico") > before  # the packets really went through the tunnel
        # and a second felixd start on each host changes nothing
    async with Reconciler(a.ns.name) as ra, Reconciler(b.ns.name) as rb:
        assert (await ra.reconcile(state_a)).changes == 0
        assert (await rb.reconcile(state_b)).changes == 0
