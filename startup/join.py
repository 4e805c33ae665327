"""Join the cluster at start, as calico-node does: this host's Node, its address, optionally a block.

Calico's rules (node/pkg/lifecycle/startup/startup.go), environment first, flags beside them:
- `IP` unset: keep the Node's address if it has one, else autodetect; `IP=autodetect`: detect at every
  start and follow changes; `IP=none`: no IPv4 address; `IP=10.0.0.5/24`: that address.
- `IP_AUTODETECTION_METHOD` picks how (startup.autodetect).
- While the address is autodetected, it is checked every `AUTODETECT_POLL_INTERVAL` seconds (60) and
  the Node is updated when it changes.
- With `--claim-block` (or `TORTIE_CLAIM_BLOCK=true`), a Node without a block claims one from a pool
  whose nodeSelector picks it (an etcd transaction: see datastore.ipam).
Registration is on by default for the etcd datastore (a shared store hosts write themselves) and off
for the cluster file (`--register always` turns it on there).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import threading
from collections.abc import Callable, Sequence

from datastore.base import Datastore
from datastore.ipam import IpamError, assign_block
from proto.record import record
from proto.resources import ClusterModel, IPInterface, Node, NotFoundError
from startup.autodetect import AutodetectError, HostInterface, choose, read_interfaces, validate
from startup.options import join_wanted

log = logging.getLogger("tortie.startup")


class JoinError(OSError):
    """This host cannot register itself (no address found, bad setting); the message says which."""


@record
class Joined:
    model: ClusterModel
    monitor: AddressMonitor | None = None

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def _wanted(args: argparse.Namespace) -> bool:
    return join_wanted(args, getattr(args, "_datastore_type", None))


def set_address(store: Datastore, name: str, address: IPInterface | None, *, create: bool) -> ClusterModel:
    """Create the Node (when `create`) or update its IPv4 address; nothing written if already so."""

    def change(model: ClusterModel) -> ClusterModel:
        try:
            node = model.node(name)
        except NotFoundError:
            if not create:
                raise
            log.info("registering Node %s (address %s)", name, address)
            return model.apply([Node(name=name, ipv4_address=address)])  # type: ignore[arg-type]
        if node.ipv4_address == address:
            return model
        log.info("Node %s: address %s -> %s", name, node.ipv4_address, address)
        return model.apply([dataclasses.replace(node, ipv4_address=address)])

    return store.transact(change)


def detect(method: str, interfaces: Callable[[], Sequence[HostInterface]] = read_interfaces) -> IPInterface:
    try:
        return choose(method, interfaces(), 4)
    except AutodetectError as exc:
        raise JoinError(str(exc)) from None


async def join_cluster(store: Datastore, model: ClusterModel, name: str, args: argparse.Namespace,
                       interfaces: Callable[[], Sequence[HostInterface]] = read_interfaces) -> Joined:
    """Make sure this host's Node exists with a current address (and a block, if asked)."""
    args._datastore_type = store.status.type
    if not _wanted(args):
        return Joined(model)
    try:
        method = validate(args.ip_autodetection_method)
    except AutodetectError as exc:
        raise JoinError(str(exc)) from None
    existing = next((n for n in model.nodes if n.name == name), None)
    ip = (args.ip or "").strip()
    follow = False
    address: IPInterface | None
    if ip == "none":
        address = None
    elif ip and ip != "autodetect":
        try:
            address = ipaddress.ip_interface(ip)  # type: ignore[assignment]
        except ValueError:
            raise JoinError(f"IP={ip!r} is not an address/prefix, 'autodetect' or 'none'") from None
        if "/" not in ip:
            raise JoinError(f"IP={ip!r} needs its prefix length (e.g. {ip}/24): CrossSubnet decides by it")
    elif ip == "" and existing is not None and existing.ipv4_address is not None:
        address = existing.ipv4_address
    else:
        address = await asyncio.to_thread(detect, method, interfaces)
        follow = True
        log.info("autodetected IPv4 address %s (%s)", address, method)
    if existing is None or existing.ipv4_address != address:
        model = await asyncio.to_thread(set_address, store, name, address, create=True)
    if args.claim_block and not model.blocks_for(name):
        try:
            block = await asyncio.to_thread(assign_block, store, name, args.claim_pool)
        except IpamError as exc:
            raise JoinError(f"cannot claim a block for {name}: {exc}") from None
        log.info("claimed block %s for Node %s", block.cidr, name)
        model = await asyncio.to_thread(store.load)
    monitor = AddressMonitor(store, name, method, address, args.autodetect_poll_interval,
                             interfaces) if follow else None
    return Joined(model, monitor)


class AddressMonitor:
    """Re-detects the address every `interval` seconds and updates the Node when it changes."""

    def __init__(self, store: Datastore, name: str, method: str, address: IPInterface | None,
                 interval: float, interfaces: Callable[[], Sequence[HostInterface]] = read_interfaces) -> None:
        self.store, self.name, self.method = store, name, method
        self.address = address
        self.interval = interval
        self.interfaces = interfaces
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="address monitor", daemon=True)
        self._thread.start()

    def check(self) -> bool:
        """One check; True when the Node was updated."""
        try:
            found = detect(self.method, self.interfaces)
        except JoinError as exc:
            log.warning("address check: %s; keeping %s", exc, self.address)
            return False
        if found == self.address:
            return False
        try:
            set_address(self.store, self.name, found, create=True)
        except (OSError, ValueError, LookupError) as exc:
            log.error("cannot update Node %s to %s: %s; will retry", self.name, found, exc)
            return False
        self.address = found
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
