"""felixd's devices: vxlan-v6.calico over an IPv6 underlay, device repair, and pod-to-pod over it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from felixd.reconcile import Reconciler
from felixd.state import (
    DesiredState,
    FdbEntry,
    Mode,
    Neighbour,
    RouteKind,
    Sysctl,
    VxlanDevice,
    route,
    route_map,
)
from lab.netns import NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.felix_support import PREFIX, add_pod, two_hosts


@pytest.fixture
def nss() -> Iterator[NetnsSet]:
    require_root()
    require_tools("ip", "bridge", "ping")
    with NetnsSet(prefix=PREFIX) as s:
        yield s


def v6_state(me: str, my_addr: str, block: str, vtep: str, mac: str, pod: str,
             peer_addr: str, peer_block: str, peer_vtep: str, peer_mac: str) -> DesiredState:
    rs = [route(peer_block, gateway=peer_vtep, dev="vxlan-v6.calico", onlink=True, mode=Mode.VXLAN),
          route(block, kind=RouteKind.BLACKHOLE, mode=Mode.LOCAL_BLOCK),
          route(f"{pod}/128", dev=f"cali{me}", scope_link=True, mode=Mode.WORKLOAD)]
    return DesiredState(
        routes=route_map(*rs),
        vxlan_v6=VxlanDevice(name="vxlan-v6.calico", local=my_addr, mac=mac, address=vtep, mtu=1430,
                             parent="eth0"),
        neighbours=frozenset({Neighbour("vxlan-v6.calico", peer_vtep, peer_mac)}),
        fdb=frozenset({FdbEntry("vxlan-v6.calico", peer_mac, peer_addr)}),
        sysctls=frozenset({Sysctl(f"net/ipv6/conf/cali{me}/proxy_ndp", "1"),
                           Sysctl("net/ipv6/conf/all/forwarding", "1")}))


async def test_vxlan_v6_device_and_pod_to_pod(nss: NetnsSet) -> None:
    a, b = two_hosts(nss)
    for h, addr in ((a, "fd00:31::1"), (b, "fd00:31::2")):  # IPv6 underlay
        h.ns.ip("-6", "addr", "add", f"{addr}/64", "dev", "eth0", "nodad")
    pod_a = add_pod(nss, a.ns, "calia", "10.244.0.5")
    pod_b = add_pod(nss, b.ns, "calib", "10.244.0.70")
    # IPv6 pods: address on eth0 and a route to the host through the host's link-local proxy (static here)
    for pod, host, ip, hif in ((pod_a, a, "fd00:244::5", "calia"), (pod_b, b, "fd00:244:0:1::5", "calib")):
        pod.ip("-6", "addr", "add", f"{ip}/128", "dev", "eth0", "nodad")
        host_ll = json.loads(host.ns.ip("-j", "-6", "addr", "show", "dev", hif, "scope", "link").stdout)
        ll = host_ll[0]["addr_info"][0]["local"] if host_ll and host_ll[0]["addr_info"] else None
        if ll is None:
            pytest.skip("no IPv6 link-local address on the host side of the pod veth")
        pod.ip("-6", "route", "add", "default", "via", ll, "dev", "eth0")
    mac_a, mac_b = "66:0a:00:00:06:01", "66:0b:00:00:06:02"
    sa = v6_state("a", "fd00:31::1", "fd00:244::/122", "fd00:244::1", mac_a, "fd00:244::5",
                  "fd00:31::2", "fd00:244:0:1::/122", "fd00:244:0:1::1", mac_b)
    sb = v6_state("b", "fd00:31::2", "fd00:244:0:1::/122", "fd00:244:0:1::1", mac_b, "fd00:244:0:1::5",
                  "fd00:31::1", "fd00:244::/122", "fd00:244::1", mac_a)
    async with Reconciler(a.ns.name) as ra, Reconciler(b.ns.name) as rb:
        for rec, st in ((ra, sa), (rb, sb)):
            res = await rec.reconcile(st)
            assert res.route_errors == [] and res.sysctl_errors == [], res
        (info,) = json.loads(a.ns.ip("-d", "-j", "link", "show", "vxlan-v6.calico").stdout)
        data = info["linkinfo"]["info_data"]
        assert (data["id"], data["port"], data.get("local6", data.get("local"))) == (4096, 4789, "fd00:31::1"), data
        assert info["mtu"] == 1430 and info["address"] == mac_a
        assert "66:0b:00:00:06:02 dst fd00:31::2 self permanent" in a.ns.exec(
            "bridge", "fdb", "show", "dev", "vxlan-v6.calico").stdout
        assert (await ra.reconcile(sa)).changes == 0

        deadline = time.monotonic() + 10
        while True:  # the first pings may race IPv6 neighbour discovery on the pod veths
            ok = pod_a.exec("ping", "-6", "-c", "1", "-W", "1", "fd00:244:0:1::5", check=False).returncode == 0
            if ok or time.monotonic() > deadline:
                break
        assert ok, "IPv6 pod A cannot reach pod B across vxlan-v6.calico"

        # someone deletes the device: the next reconcile rebuilds it with its neighbour and FDB entry
        a.ns.ip("link", "del", "vxlan-v6.calico")
        res = await ra.reconcile(sa)
        assert res.device_changes >= 1 and res.neighbour_changes == 1 and res.fdb_changes == 1
        assert res.routes_replaced == 1  # the route through the device went with it
        assert (await ra.reconcile(sa)).changes == 0


async def test_sysctls_land_in_felixds_namespace_only(nss: NetnsSet) -> None:
    """Written from a thread that entered the namespace: the root namespace is only ever read here."""
    ns = nss.add("sys")
    path = "net/ipv4/conf/all/accept_local"
    with open(f"/proc/sys/{path}") as f:
        root_before = f.read().strip()
    value = "0" if root_before == "1" else "1"
    async with Reconciler(ns.name) as rec:
        res = await rec.reconcile(DesiredState(sysctls=frozenset({Sysctl(path, value)})))
        assert (res.sysctl_changes, res.sysctl_errors) == (1, [])
        assert (await rec.reconcile(DesiredState(sysctls=frozenset({Sysctl(path, value)})))).changes == 0
    assert ns.exec("cat", f"/proc/sys/{path}").stdout.strip() == value
    with open(f"/proc/sys/{path}") as f:
        assert f.read().strip() == root_before
