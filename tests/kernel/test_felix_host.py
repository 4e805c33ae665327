"""felixd reads the host's addresses and routes (not its own) from a real namespace."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network

from pyroute2 import AsyncIPRoute

from felixd.host import read_host
from lab.netns import NetnsSet
from tests.conftest import require_root


async def test_read_host_sees_uplink_and_resolving_routes_but_not_felix_routes() -> None:
    require_root()
    with NetnsSet(prefix="tlh") as nss:
        host, peer = nss.add("host"), nss.add("peer")
        nss.veth(host, "eth0", peer, "up0")
        host.ip("addr", "add", "10.30.0.206/24", "dev", "eth0")
        host.ip("link", "set", "eth0", "mtu", "9000")
        host.ip("route", "add", "default", "via", "10.30.0.1")
        host.ip("route", "add", "192.168.133.192/26", "via", "10.30.0.56", "proto", "80")
        host.ip("route", "add", "blackhole", "192.168.226.64/26", "proto", "80")
        async with AsyncIPRoute(netns=host.name, flags=0) as ipr:
            interfaces, routes = await read_host(ipr)
    assert [(i.dev, i.address, i.mtu) for i in interfaces] == [("eth0", ip_interface("10.30.0.206/24"), 9000)]
    dsts = {r.dst: r for r in routes}
    assert dsts[ip_network("0.0.0.0/0")].gateway == ip_address("10.30.0.1")
    assert dsts[ip_network("0.0.0.0/0")].dev == "eth0"
    assert ip_network("10.30.0.0/24") in dsts
    assert ip_network("192.168.133.192/26") not in dsts
    assert ip_network("192.168.226.64/26") not in dsts
