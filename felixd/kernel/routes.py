"""felixd's routes in the kernel: read by protocol and diffed in one pass, changed in bulk (raw netlink)
or one at a time (pyroute2).

Both write paths send the same request for the same route (type, scope, onlink flag, gateway,
device, table, metric, protocol) with replace semantics; a kernel test checks that they leave the
kernel in the same state. felixd itself writes through the raw socket only (one sendmsg for one
route is faster than pyroute2's call, and every write then carries one port id); pyroute2's path is
the independent reference, imported only when asked for.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import Any

from felixd.kernel.netlink_bulk import BulkNetlink
from felixd.kernel.netns import NetnsWorker
from felixd.kernel.route_codec import KernelRoute, split_key
from felixd.kernel.rtnl import (
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_LOCAL,
    RTNH_F_ONLINK,
    RTPROT_KERNEL,
)
from felixd.state import Op, RouteError, RouteKey, RouteKind, RouteOp, RouteShape, key_text
from proto import prefix as pf
from proto.record import record


@record
class RouteDiff:
    """What a full read of the kernel found: the writes to make, and the keys felixd must not write."""

    ops: list[RouteOp] = field(default_factory=list)
    foreign: set[RouteKey] = field(default_factory=set)  # held by routes of other protocols
    conflicts: list[str] = field(default_factory=list)  # desired routes a foreign route holds (text)


def classify(dumped: Iterable[KernelRoute], protocol: int, own_oifs: Collection[int],
             foreign: set[RouteKey]) -> Iterator[KernelRoute]:
    """The routes felixd owns (its protocol, or other than the kernel's own on one of its devices);
    the keys of every other route are added to `foreign` (a replace there would overwrite them)."""
    for kr in dumped:
        proto = kr[6]
        if proto == protocol:
            yield kr
        elif proto == RTPROT_KERNEL:
            foreign.add(kr[0])  # the kernel's own (subnet) routes, on any device
        elif type(kr[0]) is not bytes and kr[0][1] == RT_TABLE_LOCAL:  # type: ignore[index]
            continue  # the local table: addresses of this host, never a key felixd writes
        elif kr[7] in own_oifs and kr[3] is not None:
            yield kr
        else:
            foreign.add(kr[0])


def diff_routes(desired: Mapping[RouteKey, RouteShape], owned: Iterable[KernelRoute], protocol: int,
                out: RouteDiff, again: Callable[[], Iterable[KernelRoute]] | None = None) -> RouteDiff:
    """Replaces for missing or different routes, deletes for owned routes not desired, in one pass over
    `owned` (which may be a dump still in progress: nothing is kept per route).

    The desired routes found are counted; when some are missing, a second pass finds which: over
    `again()` (a second dump) when given, else over the keys the first pass kept. So a resync of an
    unchanged kernel holds no per-route set at all.

    A desired route whose key is held by a foreign route is left out (and named in `out.conflicts`):
    writing it with replace would overwrite the other route. `out.foreign` must be complete before
    that check, so it runs after `owned` is exhausted.
    """
    ops = out.ops
    seen: set[RouteKey] | None = set() if again is None else None
    found = 0
    for kr in owned:
        key = kr[0]
        shape = desired.get(key)
        if shape is None:
            ops.append((Op.DELETE, key, None, kr[6]))
            continue
        found += 1
        if seen is not None:
            seen.add(key)
        version = key[0] if type(key) is bytes else key[0][0]  # type: ignore[index]
        if kr[6] != protocol or kr[1:6] != shape.signature(version):
            ops.append((Op.REPLACE, key, shape, protocol))
    if found == len(desired):
        return out
    if seen is None:
        assert again is not None
        seen = {kr[0] for kr in again() if kr[0] in desired}
    foreign = out.foreign
    for key, shape in desired.items():
        if key in seen:
            continue
        if key in foreign:
            out.conflicts.append(key_text(key))
            continue
        ops.append((Op.REPLACE, key, shape, protocol))
    return out


class KernelRoutes:
    """The routes of one namespace, through the worker thread living in it."""

    def __init__(self, worker: NetnsWorker, ipr_factory: Any = None) -> None:
        self.worker = worker
        self.bulk = BulkNetlink(worker)
        self._ipr_factory = ipr_factory  # async () -> pyroute2 AsyncIPRoute, for the reference path

    def close(self) -> None:
        self.bulk.close()

    @property
    def portid(self) -> int:
        return self.bulk.portid

    async def links(self) -> dict[str, int]:
        return await self.worker.acall(self.bulk.links)

    def _read_sync(self, protocol: int, ifindex: dict[str, int], own_devices: Iterable[str],
                   foreign: set[RouteKey]) -> list[KernelRoute]:
        names = {i: n for n, i in ifindex.items()}
        own = {ifindex[d] for d in own_devices if d in ifindex}
        owned: list[KernelRoute] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            # every protocol: a foreign route under the same key as one of ours must be seen, since a
            # replace would overwrite it
            owned.extend(classify(self.bulk.dump_routes(family, None, names), protocol, own, foreign))
        return owned

    async def read(self, protocol: int, ifindex: dict[str, int], own_devices: Iterable[str] = ()) -> \
            tuple[dict[RouteKey, KernelRoute], set[RouteKey]]:
        """Routes felixd owns (by key) and the keys of every other route."""
        foreign: set[RouteKey] = set()
        owned = await self.worker.acall(self._read_sync, protocol, ifindex, tuple(own_devices), foreign)
        return {kr[0]: kr for kr in owned}, foreign

    def _diff_sync(self, desired: Mapping[RouteKey, RouteShape], protocol: int, ifindex: dict[str, int],
                   own_devices: Iterable[str]) -> RouteDiff:
        names = {i: n for n, i in ifindex.items()}
        own = {ifindex[d] for d in own_devices if d in ifindex}
        out = RouteDiff()

        def owned() -> Iterator[KernelRoute]:
            for family in (socket.AF_INET, socket.AF_INET6):
                yield from classify(self.bulk.dump_routes(family, None, names), protocol, own, out.foreign)

        return diff_routes(desired, owned(), protocol, out, again=owned)

    async def diff(self, desired: Mapping[RouteKey, RouteShape], protocol: int, ifindex: dict[str, int],
                   own_devices: Iterable[str] = ()) -> RouteDiff:
        """Dump and diff in the worker thread: the dump is never held whole. `desired` must not change
        meanwhile (the daemon pauses the feed during a full sync)."""
        return await self.worker.acall(self._diff_sync, desired, protocol, ifindex, tuple(own_devices))

    # ------------------------------------------------------------ writes

    async def apply_bulk(self, ops: Sequence[RouteOp], ifindex: dict[str, int],
                         inline: bool = False) -> list[RouteError]:
        """Write `ops` through the raw socket. `inline`: on the calling thread (a small change: no thread
        hop); otherwise encoded here and transmitted by the worker thread, one chunk at a time."""
        if inline:
            return self.bulk.apply(ops, ifindex)
        from felixd.kernel.netlink_bulk import CHUNK

        errors: list[RouteError] = []
        for start in range(0, len(ops), CHUNK):
            batch = self.bulk.encode(ops[start:start + CHUNK], ifindex)
            errors.extend(await self.worker.acall(self.bulk.transmit, batch))
        return errors

    async def apply_incremental(self, ops: Sequence[RouteOp], ifindex: dict[str, int]) -> list[RouteError]:
        """The same writes through pyroute2, one call per route (the reference path)."""
        ipr = await self._ipr_factory()  # first: it makes pyroute2 importable (see Reconciler.pyroute2)
        from pyroute2.netlink.exceptions import NetlinkError

        errors: list[RouteError] = []
        for op, key, shape, protocol in ops:
            prefix, table, metric = split_key(key)
            family = socket.AF_INET6 if prefix[0] == 6 else socket.AF_INET
            try:
                if op is Op.REPLACE:
                    assert shape is not None
                    await ipr.route("replace", **self._spec(prefix, table, metric, shape, protocol, ifindex))
                else:
                    # scope "nowhere" matches any scope, as in the bulk path's delete
                    await ipr.route("del", dst=pf.text(prefix), table=table, proto=protocol, priority=metric,
                                    scope=RT_SCOPE_NOWHERE, family=family)
            except NetlinkError as exc:
                errors.append(RouteError(op, key, exc.code, str(exc)))
            except LookupError as exc:
                errors.append(RouteError(op, key, errno.ENODEV, str(exc)))
        return errors

    @staticmethod
    def _spec(prefix: bytes, table: int, metric: int, shape: RouteShape, protocol: int,
              ifindex: dict[str, int]) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "dst": pf.text(prefix), "table": table, "proto": protocol, "priority": metric,
            "family": socket.AF_INET6 if prefix[0] == 6 else socket.AF_INET,
        }
        if shape.kind == RouteKind.BLACKHOLE:
            spec["type"] = "blackhole"
            return spec
        spec["type"] = "unicast"
        spec["scope"] = RT_SCOPE_LINK if shape.scope_link else RT_SCOPE_UNIVERSE
        if shape.onlink:
            spec["flags"] = RTNH_F_ONLINK
        if shape.gateway is not None:
            spec["gateway"] = pf.address_text(shape.gateway)
        if shape.dev is not None:
            if shape.dev not in ifindex:
                raise LookupError(f"no device {shape.dev}")
            spec["oif"] = ifindex[shape.dev]
        return spec

