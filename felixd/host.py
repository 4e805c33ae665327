"""Reads what the planner needs to know of the host's own network: its addresses and routes.

Only the host's own state is read here (uplinks, connected subnets, routes of other protocols that
resolve next hops); felixd's own routes and devices are excluded, so a plan never depends on what
felixd itself programmed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection

from felixd.plan import HostInterface, HostRoute

OWN_DEVICES = frozenset({"tunl0", "vxlan.calico", "vxlan-v6.calico"})


async def read_host(ipr: object, own_proto: int = 80,
                    skip_devices: Collection[str] = OWN_DEVICES) -> tuple[tuple[HostInterface, ...],
                                                                          tuple[HostRoute, ...]]:
    """`ipr` is a pyroute2 AsyncIPRoute bound to the namespace felixd programs."""
    names: dict[int, str] = {}
    mtus: dict[int, int] = {}
    async for link in await ipr.link("dump"):  # type: ignore[attr-defined]
        names[link["index"]] = link.get("ifname")
        mtus[link["index"]] = link.get("mtu") or 1500
    interfaces: list[HostInterface] = []
    async for addr in await ipr.addr("dump"):  # type: ignore[attr-defined]
        dev = names.get(addr["index"])
        ip = addr.get("address")
        if dev is None or ip is None or dev in skip_devices or dev.startswith("cali"):
            continue
        iface = ipaddress.ip_interface(f"{ip}/{addr['prefixlen']}")
        if iface.ip.is_loopback or iface.ip.is_link_local:
            continue
        interfaces.append(HostInterface(dev=dev, address=iface, mtu=mtus.get(addr["index"], 1500)))
    routes: list[HostRoute] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        async for r in await ipr.route("dump", family=family, table=254):  # type: ignore[attr-defined]
            dev = names.get(r.get("oif"))
            if r["proto"] == own_proto or dev in skip_devices or r["type"] != 1:  # unicast only
                continue
            dst = r.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
            gw = r.get("gateway")
            routes.append(HostRoute(dst=ipaddress.ip_network(f"{dst}/{r['dst_len']}"),
                                    gateway=ipaddress.ip_address(gw) if gw else None, dev=dev))
    return tuple(interfaces), tuple(routes)


async def read_links(ipr: object) -> frozenset[str]:
    """Names of every interface in the namespace."""
    return frozenset([link.get("ifname") async for link in await ipr.link("dump")])  # type: ignore[attr-defined]
