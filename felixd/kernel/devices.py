"""felixd's own devices (tunl0, vxlan.calico, vxlan-v6.calico) and their neighbour and FDB entries.

Everything here goes through pyroute2's AsyncIPRoute: these are a handful of objects, changed rarely.
Each `sync_*` reads the kernel first and writes only what differs, so a restart over an unchanged
kernel writes nothing; each returns how many changes it made.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from felixd.kernel.rtnl import KernelRefused
from felixd.state import FdbEntry, IpipDevice, Neighbour, VxlanDevice
from proto.record import record

log = logging.getLogger(__name__)

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
IFF_UP = 0x1
EOPNOTSUPP = 95
ENODEV = 19
OWN_DEVICE_NAMES = ("tunl0", "vxlan.calico", "vxlan-v6.calico")


@record
class DeviceStats:
    changes: int = 0
    ipip_unsupported: bool = False
    ipip_unsupported_reports: int = 0  # times felixd said so (once per process)


def _is_link_local(address: str) -> bool:
    return ipaddress.ip_address(address).is_link_local


async def _collect(result: Any) -> list[Any]:
    """pyroute2 returns lists for some calls and async generators for dumps."""
    if isinstance(result, list):
        return result
    return [x async for x in result]


class Devices:
    def __init__(self, ipr: AsyncIPRoute, stats: DeviceStats | None = None) -> None:
        self.ipr = ipr
        self.stats = stats or DeviceStats()

    async def _link(self, name: str) -> Any | None:
        try:
            links = await _collect(await self.ipr.link("get", ifname=name))
        except NetlinkError as exc:
            if exc.code == ENODEV:
                return None
            raise
        return links[0] if links else None

    async def index(self, name: str) -> int | None:
        link = await self._link(name)
        return None if link is None else int(link["index"])

    # ------------------------------------------------------------ addresses

    async def _sync_address(self, index: int, address: str | None) -> int:
        """Exactly `address` (as a host address) on the device, besides IPv6 link-local ones."""
        changes = 0
        want = None
        if address is not None:
            ip = ipaddress.ip_interface(address)
            want = (str(ip.ip), 32 if ip.version == 4 else 128)
        have = set()
        for msg in await _collect(await self.ipr.addr("dump", index=index)):
            if msg["index"] != index:
                continue
            addr = msg.get_attr("IFA_ADDRESS")
            if addr is None or _is_link_local(addr):
                continue
            have.add((addr, msg["prefixlen"]))
        for addr, plen in have - ({want} if want else set()):
            await self.ipr.addr("del", index=index, address=addr, prefixlen=plen)
            changes += 1
        if want is not None and want not in have:
            await self.ipr.addr("add", index=index, address=want[0], prefixlen=want[1])
            changes += 1
        return changes

    async def _sync_link_basics(self, link: Any, mtu: int, mac: str | None) -> int:
        changes = 0
        index = link["index"]
        if link.get_attr("IFLA_MTU") != mtu:
            await self.ipr.link("set", index=index, mtu=mtu)
            changes += 1
        if mac and (link.get_attr("IFLA_ADDRESS") or "").lower() != mac.lower():
            await self.ipr.link("set", index=index, address=mac)
            changes += 1
        if not link["flags"] & IFF_UP:
            await self.ipr.link("set", index=index, state="up")
            changes += 1
        return changes

    # ------------------------------------------------------------ vxlan

    async def sync_vxlan(self, name: str, want: VxlanDevice | None) -> int:
        """Create, fix or (when not wanted) delete the VXLAN device `name`."""
        link = await self._link(name)
        changes = 0
        if want is None:
            if link is not None and self._kind(link) == "vxlan":
                await self.ipr.link("del", index=link["index"])
                changes += 1
            self.stats.changes += changes
            return changes
        parent = await self.index(want.parent) if want.parent else None
        if want.parent and parent is None:
            raise RuntimeError(f"{name}: parent device {want.parent} does not exist")
        if link is not None and not self._vxlan_matches(link, want, parent):
            # VNI, port and local address cannot be changed in place on every kernel: recreate
            await self.ipr.link("del", index=link["index"])
            link = None
            changes += 1
        if link is None:
            spec: dict[str, Any] = {"ifname": name, "kind": "vxlan", "vxlan_id": want.vni,
                                    "vxlan_port": want.port, "vxlan_learning": 0, "mtu": want.mtu}
            if want.local:
                spec["vxlan_local6" if ":" in want.local else "vxlan_local"] = want.local
            if parent is not None:
                spec["vxlan_link"] = parent
            if want.mac:
                spec["address"] = want.mac
            try:
                await self.ipr.link("add", **spec)
            except NetlinkError as exc:
                raise KernelRefused(exc.code, f"creating {name} (vxlan, VNI {want.vni})") from exc
            changes += 1
            link = await self._link(name)
            assert link is not None
        changes += await self._sync_link_basics(link, want.mtu, want.mac)
        changes += await self._sync_address(link["index"], want.address)
        self.stats.changes += changes
        return changes

    @staticmethod
    def _kind(link: Any) -> str | None:
        info = link.get_attr("IFLA_LINKINFO")
        return None if info is None else info.get_attr("IFLA_INFO_KIND")

    def _vxlan_matches(self, link: Any, want: VxlanDevice, parent: int | None) -> bool:
        if self._kind(link) != "vxlan":
            return False
        data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        local = data.get_attr("IFLA_VXLAN_LOCAL6" if ":" in want.local else "IFLA_VXLAN_LOCAL")
        return (data.get_attr("IFLA_VXLAN_ID") == want.vni
                and data.get_attr("IFLA_VXLAN_PORT") == want.port
                and data.get_attr("IFLA_VXLAN_LEARNING") == 0
                and (local or "") == want.local
                and (parent is None or data.get_attr("IFLA_VXLAN_LINK") == parent))

    # ------------------------------------------------------------ ipip

    async def sync_ipip(self, want: IpipDevice | None) -> int:
        """Configure tunl0; on a kernel without IP-in-IP say so once and carry on."""
        name = want.name if want else "tunl0"
        link = await self._link(name)
        changes = 0
        if want is None:
            if link is not None and self._kind(link) == "ipip":
                # tunl0 is the ipip module's fallback device and cannot be deleted: leave it down and bare
                changes += await self._sync_address(link["index"], None)
                if link["flags"] & IFF_UP:
                    await self.ipr.link("set", index=link["index"], state="down")
                    changes += 1
            self.stats.changes += changes
            return changes
        if link is None:
            try:
                await self.ipr.link("add", ifname=name, kind="ipip")
            except NetlinkError as exc:
                if exc.code != EOPNOTSUPP:
                    raise KernelRefused(exc.code, f"creating {name} (ipip)") from exc
                self._report_no_ipip()
                return 0
            changes += 1
            link = await self._link(name)
            if link is None:
                self._report_no_ipip()
                return changes
        changes += await self._sync_link_basics(link, want.mtu, None)
        changes += await self._sync_address(link["index"], want.address)
        self.stats.changes += changes
        return changes

    def _report_no_ipip(self) -> None:
        if not self.stats.ipip_unsupported:
            log.error("this kernel has no IP-in-IP support (no ipip module): IPIP pools are not "
                      "encapsulated; routes of other pools are still programmed")
            self.stats.ipip_unsupported_reports += 1
        self.stats.ipip_unsupported = True

    # ------------------------------------------------------------ neighbours and FDB

    async def sync_neighbours(self, want: Iterable[Neighbour], devices: Iterable[str], prune: bool = True) -> int:
        """Permanent neighbour entries on our devices: exactly `want` (others on them are removed unless
        `prune` is False)."""
        wanted = {(n.dev, n.ip): n.mac.lower() for n in want}
        changes = 0
        for dev in set(devices) | {d for d, _ in wanted}:
            index = await self.index(dev)
            if index is None:
                continue
            have: dict[str, str] = {}
            for msg in await _collect(await self.ipr.neigh("dump", ifindex=index)):
                if msg["ifindex"] == index and msg["state"] & NUD_PERMANENT:
                    have[msg.get_attr("NDA_DST")] = (msg.get_attr("NDA_LLADDR") or "").lower()
            for ip, mac in have.items():
                if prune and (dev, ip) not in wanted:
                    await self.ipr.neigh("del", ifindex=index, dst=ip, lladdr=mac)
                    changes += 1
            for (wdev, ip), mac in wanted.items():
                if wdev == dev and have.get(ip) != mac:
                    await self.ipr.neigh("replace", ifindex=index, dst=ip, lladdr=mac, state=NUD_PERMANENT)
                    changes += 1
        self.stats.changes += changes
        return changes

    async def sync_fdb(self, want: Iterable[FdbEntry], devices: Iterable[str], prune: bool = True) -> int:
        """`self permanent` FDB entries with a remote (MAC -> node) on our VXLAN devices: exactly `want`
        (or at least `want`, when `prune` is False)."""
        wanted = {(f.dev, f.mac.lower(), f.dst) for f in want}
        changes = 0
        for dev in set(devices) | {d for d, _, _ in wanted}:
            index = await self.index(dev)
            if index is None:
                continue
            have = set()
            for msg in await _collect(await self.ipr.fdb("dump", ifindex=index)):
                dst = msg.get_attr("NDA_DST")
                if msg["ifindex"] != index or dst is None or not msg["state"] & NUD_PERMANENT:
                    continue
                have.add((dev, (msg.get_attr("NDA_LLADDR") or "").lower(), dst))
            for _, mac, dst in (have - wanted) if prune else ():
                await self.ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst, state=NUD_PERMANENT,
                                   flags=NTF_SELF)
                changes += 1
            for wdev, mac, dst in wanted - have:
                if wdev != dev:
                    continue
                # append, not replace: one MAC may point at several remote addresses (never here, but
                # replace would then rewrite the wrong one)
                await self.ipr.fdb("append", ifindex=index, lladdr=mac, dst=dst, state=NUD_PERMANENT,
                                   flags=NTF_SELF)
                changes += 1
        self.stats.changes += changes
        return changes
