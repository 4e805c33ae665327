"""felixd reads the host's addresses, links and routes (not its own) from a real namespace."""

from __future__ import annotations

from ipaddress import ip_interface

from felixd.reconcile import Reconciler
from lab.netns import NetnsSet
from proto import prefix as pf
from tests.conftest import require_root


async def test_read_host_sees_uplink_and_resolving_routes_but_not_felix_routes() -> None:
    require_root()
    with NetnsSet(prefix="tlh") as nss:
        host, peer = nss.add("host"), nss.add("peer")
        nss.veth(host, "eth0", peer, "up0")
        host.ip("addr", "add", "10.30.0.206/24", "dev", "eth0")
        host.ip("-6", "addr", "add", "fd00:30::206/64", "dev", "eth0", "nodad")
        host.ip("link", "set", "eth0", "mtu", "9000")
        host.ip("route", "add", "default", "via", "10.30.0.1")
        host.ip("route", "add", "10.99.0.0/16", "via", "10.30.0.7", "table", "100")  # not the main table
        host.ip("route", "add", "192.168.133.192/26", "via", "10.30.0.56", "proto", "80")
        host.ip("route", "add", "blackhole", "192.168.226.64/26", "proto", "80")
        host.ip("link", "add", "vxlan.calico", "type", "vxlan", "id", "4096", "dstport", "4789")
        async with Reconciler(host.name) as rec:
            state = await rec.read_host()
            again = await rec.read_host()
            host.ip("addr", "add", "10.31.0.206/24", "dev", "eth0")
            moved = await rec.read_host()
    assert [(i.dev, i.address, i.mtu) for i in state.interfaces] == [
        ("eth0", ip_interface("10.30.0.206/24"), 9000), ("eth0", ip_interface("fd00:30::206/64"), 9000)]
    dsts = {r.dst: r for r in state.routes}
    default = dsts[pf.parse("0.0.0.0/0")]
    assert (default.gateway, default.dev) == (pf.parse_address("10.30.0.1"), "eth0")
    assert pf.parse("10.30.0.0/24") in dsts and pf.parse("fd00:30::/64") in dsts
    assert pf.parse("192.168.133.192/26") not in dsts  # felixd's own (protocol 80)
    assert pf.parse("192.168.226.64/26") not in dsts
    assert pf.parse("10.99.0.0/16") not in dsts
    assert "vxlan.calico" not in state.links and state.links["eth0"].mtu == 9000  # felixd's devices: not the host's
    assert again == state  # nothing changed: equal, so the daemon rebuilds nothing
    assert moved != state and len(moved.interfaces) == 3
