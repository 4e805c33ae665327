"""Routes: dumped by protocol, changed in bulk (raw netlink) or one at a time (pyroute2).

Both write paths send the same request for the same route (type, scope, onlink flag, gateway,
device, table, metric, protocol) with replace semantics; a kernel test checks that they leave the
kernel in the same state.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from felixd.kernel.netlink_bulk import (
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RTNH_F_ONLINK,
    BulkNetlink,
    KernelRoute,
    Op,
    RouteError,
    RouteOp,
    kernel_metric,
)
from felixd.kernel.netns import NetnsWorker
from felixd.state import Route, RouteKind

RTPROT_KERNEL = 2
RT_TABLE_LOCAL = 255

RouteKey = tuple[str, int, int]  # (dst, table, metric as the kernel stores it)


@dataclass
class RouteSnapshot:
    owned: dict[RouteKey, KernelRoute]
    foreign: set[RouteKey]  # (dst, table, metric) of routes felixd must not overwrite


def kernel_key(route: Route) -> RouteKey:
    return (route.dst, route.table, kernel_metric(route))


class RouteTable:
    def __init__(self, worker: NetnsWorker, ipr: AsyncIPRoute) -> None:
        self.worker = worker
        self.ipr = ipr
        self.bulk = BulkNetlink(worker)

    def close(self) -> None:
        self.bulk.close()

    async def links(self) -> dict[str, int]:
        return await self.worker.acall(self.bulk.links)

    def _dump_sync(self, protocol: int, ifindex: dict[str, int], own_devices: Iterable[str]) -> RouteSnapshot:
        names = {i: n for n, i in ifindex.items()}
        own = {ifindex[d] for d in own_devices if d in ifindex}
        snap = RouteSnapshot({}, set())
        for family in (socket.AF_INET, socket.AF_INET6):
            # every protocol: a foreign route under the same key as one of ours must be seen, since a
            # replace would overwrite it
            for kr in self.bulk.dump_routes(family, None, names):
                dev, proto, table = kr[3], kr[8], kr[6]
                key = (kr[0], table, kr[7])
                if proto == protocol:
                    snap.owned[key] = kr
                elif proto == RTPROT_KERNEL or table == RT_TABLE_LOCAL:
                    snap.foreign.add(key)  # the kernel's own (subnet, local) routes, on any device
                elif dev is not None and ifindex.get(dev) in own:
                    snap.owned[key] = kr
                else:
                    snap.foreign.add(key)
        return snap

    async def dump(self, protocol: int, ifindex: dict[str, int], own_devices: Iterable[str] = ()) -> RouteSnapshot:
        """Routes felixd owns (of `protocol`, or other than the kernel's own on one of `own_devices`),
        and the keys of every other route."""
        return await self.worker.acall(self._dump_sync, protocol, ifindex, tuple(own_devices))

    async def apply_bulk(self, ops: Sequence[RouteOp], ifindex: dict[str, int]) -> list[RouteError]:
        return await self.worker.acall(self.bulk.apply, ops, ifindex)

    async def apply_incremental(self, ops: Sequence[RouteOp], ifindex: dict[str, int]) -> list[RouteError]:
        errors: list[RouteError] = []
        for op, route, protocol in ops:
            try:
                if op is Op.REPLACE:
                    await self.ipr.route("replace", **self._spec(route, protocol, ifindex))
                else:
                    # scope "nowhere" matches any scope, as in the bulk path's delete
                    await self.ipr.route("del", dst=route.dst, table=route.table, proto=protocol,
                                         priority=kernel_metric(route), scope=RT_SCOPE_NOWHERE,
                                         family=socket.AF_INET6 if ":" in route.dst else socket.AF_INET)
            except NetlinkError as exc:
                errors.append(RouteError(op, route, exc.code, str(exc)))
            except LookupError as exc:
                errors.append(RouteError(op, route, errno.ENODEV, str(exc)))
        return errors

    @staticmethod
    def _spec(route: Route, protocol: int, ifindex: dict[str, int]) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "dst": route.dst, "table": route.table, "proto": protocol, "priority": kernel_metric(route),
            "family": socket.AF_INET6 if ":" in route.dst else socket.AF_INET,
        }
        if route.kind == RouteKind.BLACKHOLE:
            spec["type"] = "blackhole"
            return spec
        spec["type"] = "unicast"
        spec["scope"] = RT_SCOPE_LINK if route.scope_link else RT_SCOPE_UNIVERSE
        if route.onlink:
            spec["flags"] = RTNH_F_ONLINK
        if route.gateway is not None:
            spec["gateway"] = route.gateway
        if route.dev is not None:
            if route.dev not in ifindex:
                raise LookupError(f"no device {route.dev}")
            spec["oif"] = ifindex[route.dev]
        return spec
