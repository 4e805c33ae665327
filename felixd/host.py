"""What the planner needs to know of the host's own network: links, addresses, routes.

Only the host's own state is read (uplinks, connected subnets, routes of other protocols that
resolve next hops); felixd's own routes and devices are left out, so a plan never depends on what
felixd itself programmed, and felixd's own writes never make the host look changed. Read through
felixd's raw netlink socket (no pyroute2): at start, when the kernel announces a change to links,
addresses or other protocols' routes, and on the periodic check. The daemon compares what it reads
with what it had and rebuilds its planner indexes only when they differ.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from dataclasses import field

from felixd.kernel.netlink_bulk import BulkNetlink, Link
from felixd.kernel.rtnl import RT_SCOPE_HOST, RT_SCOPE_LINK
from felixd.plan_input import HostAddress, HostRoute
from felixd.state import MAIN_TABLE
from proto.record import record

OWN_DEVICES = frozenset({"tunl0", "vxlan.calico", "vxlan-v6.calico"})


@record(frozen=True)
class HostState:
    interfaces: tuple[HostAddress, ...]
    routes: tuple[HostRoute, ...]
    links: dict[str, Link]  # every interface but felixd's own devices
    # felixd's own devices as they are (link, addresses): not the host's, so not part of what the
    # planner uses (`==` ignores them), but a change there made by someone else is drift to repair
    devices: dict[str, tuple[Link, frozenset[tuple[bytes, int]]]] = field(default_factory=dict, compare=False)

    @property
    def link_names(self) -> frozenset[str]:
        return frozenset(self.links)


def read_host_sync(bulk: BulkNetlink, own_proto: int = 80,
                   skip_devices: Collection[str] = OWN_DEVICES) -> HostState:
    """Run in the namespace's worker thread (or anywhere the socket may be used)."""
    links = bulk.link_states()
    names = {link.index: name for name, link in links.items()}
    interfaces: list[HostAddress] = []
    device_addresses: dict[str, set[tuple[bytes, int]]] = {}
    for index, _version, raw, plen, scope in bulk.addresses():
        dev = names.get(index)
        if dev in skip_devices and scope != RT_SCOPE_LINK:
            device_addresses.setdefault(dev, set()).add((raw, plen))  # type: ignore[arg-type]
        if dev is None or dev in skip_devices or dev.startswith("cali") or scope in (RT_SCOPE_LINK, RT_SCOPE_HOST):
            continue
        iface = ipaddress.ip_interface((ipaddress.ip_address(raw), plen))
        if iface.ip.is_loopback or iface.ip.is_link_local:
            continue
        interfaces.append(HostAddress(dev=dev, address=iface, mtu=links[dev].mtu))
    routes: list[HostRoute] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for key, kind, gateway, dev, _onlink, _scope, _proto, _oif in bulk.dump_routes(
                family, None, names, skip_protocol=own_proto):
            if type(key) is not bytes and key[1] != MAIN_TABLE:  # type: ignore[index]
                continue
            if kind != "unicast" or dev in skip_devices:
                continue
            routes.append(HostRoute(dst=key if type(key) is bytes else key[0], gateway=gateway,  # type: ignore[arg-type,index]
                                    dev=dev))
    own = {name: link for name, link in links.items() if name not in skip_devices}
    devices = {name: (link, frozenset(device_addresses.get(name, ()))) for name, link in links.items()
               if name in skip_devices}
    return HostState(tuple(sorted(interfaces, key=lambda i: (i.dev, i.address.version, int(i.address)))),
                     tuple(sorted(routes, key=lambda r: (r.dst, r.gateway or b"", r.dev or ""))), own, devices)
