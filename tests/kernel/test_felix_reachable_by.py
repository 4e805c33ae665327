"""BGPPeer `reachableBy` in the kernel: tortie-felixd as a process writes the static route to the peer
through the gateway, keeps it through resyncs and feed deltas, and removes it with the BGPPeer.

The peer's address (a ToR's loopback, 10.99.0.1 on the gateway namespace's `lo`) is reachable from
the host only through that route: a ping proves the route the kernel holds is the one that works.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lab.netns import Netns, NetnsSet
from proto.feed import FeedRoute
from runtime.control import call
from tests.conftest import require_root
from tests.kernel.felix_support import ChangeWitness, ScriptedFeed, route_lines, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

BIN = Path(sys.executable).parent
HEAD = "apiVersion: projectcalico.org/v3\n"
BASE = "---\n".join([
    f"{HEAD}kind: Node\nmetadata: {{name: me}}\n"
    "spec: {bgp: {ipv4Address: 10.30.0.206/24, ipv6Address: 'fd00:30::206/64'}}\n",
    f"{HEAD}kind: Node\nmetadata: {{name: other}}\nspec: {{bgp: {{ipv4Address: 10.30.0.56/24}}}}\n",
    f"{HEAD}kind: IPPool\nmetadata: {{name: pods}}\nspec: {{cidr: 10.244.0.0/16, blockSize: 26}}\n",
    f"{HEAD}kind: BlockAffinity\nmetadata: {{name: me}}\nspec: {{node: me, cidr: 10.244.0.0/26}}\n",
])
TOR = (f"---\n{HEAD}kind: BGPPeer\nmetadata: {{name: tor}}\n"
       "spec: {peerIP: 10.99.0.1, asNumber: 65001, reachableBy: 10.30.0.1}\n"
       f"---\n{HEAD}kind: BGPPeer\nmetadata: {{name: tor6}}\n"
       "spec: {peerIP: 'fd00:99::1', asNumber: 65001, reachableBy: 'fd00:30::1'}\n")
PEER_ROUTE = "10.99.0.1 via 10.30.0.1 dev eth0"
PEER_ROUTE6 = "fd00:99::1 via fd00:30::1 dev eth0"
OTHER_BLOCK = "10.244.1.0/26"


@dataclass
class Felix:
    ns: Netns
    config: Path
    run_dir: Path
    feed: ScriptedFeed
    log: Path
    proc: subprocess.Popen[bytes]

    def status(self) -> dict[str, Any]:
        return call(str(self.run_dir / "felixd.sock"), "status")  # type: ignore[no-any-return]

    def ours(self) -> list[str]:
        return route_lines(self.ns, "-4", "proto", "80")

    def ours6(self) -> list[str]:
        return route_lines(self.ns, "-6", "proto", "80")

    def write(self, text: str) -> None:
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)

    def diag(self) -> str:
        return "kernel:\n" + "\n".join(self.ours()) + "\nlog:\n" + self.log.read_text(errors="replace")[-3000:]



def pings(ns: Netns, address: str) -> bool:
    return ns.exec("ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def felix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Felix]:
    require_root()
    tmp = tmp_path_factory.mktemp("felixd-reach")
    with NetnsSet(prefix="trb") as nss:
        ns, gw = nss.add("host"), nss.add("gw")
        nss.veth(ns, "eth0", gw, "up0")
        ns.ip("addr", "add", "10.30.0.206/24", "dev", "eth0")
        gw.ip("addr", "add", "10.30.0.1/24", "dev", "up0")
        ns.ip("addr", "add", "fd00:30::206/64", "dev", "eth0", "nodad")
        gw.ip("addr", "add", "fd00:30::1/64", "dev", "up0", "nodad")
        gw.ip("addr", "add", "10.99.0.1/32", "dev", "lo")  # the ToR's loopback: not on any shared subnet
        gw.ip("addr", "add", "fd00:99::1/128", "dev", "lo")
        config = tmp / "cluster.yaml"
        config.write_text(BASE + TOR)
        run_dir = tmp / "run"
        run_dir.mkdir()
        feed = await ScriptedFeed(str(run_dir / "feed.sock"),
                                  {OTHER_BLOCK: FeedRoute(OTHER_BLOCK, "10.30.0.56", "other")}).start()
        log = tmp / "felixd.log"
        with open(log, "ab") as out:
            proc = nss.spawn(ns, str(BIN / "tortie-felixd"), "--config", str(config), "--node", "me",
                             "--run-dir", str(run_dir), "--resync-interval", "3600", "--metrics-port", "0",
                             stdout=out, stderr=subprocess.STDOUT)
        f = Felix(ns, config, run_dir, feed, log, proc)
        try:
            await until(lambda: f.status()["counts"].get("full_syncs", 0) >= 2, 30, "felixd synced", f.diag)
            yield f
        finally:
            await feed.close()


async def test_the_static_route_to_the_peer_is_in_the_kernel_and_carries_traffic(felix: Felix) -> None:
    await until(lambda: PEER_ROUTE in felix.ours(), 15, "the reachableBy route", felix.diag)
    rows = await asyncio.to_thread(call, str(felix.run_dir / "felixd.sock"), "routes")
    row = next(r for r in rows if r["prefix"] == "10.99.0.1/32")  # what `tortiectl routes` shows
    assert (row["mode"], row["gateway"], row["dev"], row["in_kernel"]) == ("reachable-by", "10.30.0.1", "eth0", True), row
    assert await asyncio.to_thread(pings, felix.ns, "10.99.0.1"), "the peer's loopback answers through the route"
    await until(lambda: any(ln.startswith(PEER_ROUTE6) for ln in felix.ours6()), 15, "the IPv6 route",
                lambda: "\n".join(felix.ours6()))
    assert await asyncio.to_thread(pings, felix.ns, "fd00:99::1")


async def test_it_survives_a_resync_and_a_learned_route_to_the_same_prefix(felix: Felix) -> None:
    await until(lambda: PEER_ROUTE in felix.ours(), 15, "the reachableBy route", felix.diag)
    witness = ChangeWitness(felix.ns.name)
    try:
        witness.drain()
        answer = await asyncio.to_thread(call, str(felix.run_dir / "felixd.sock"), "resync")
        assert answer["changes"] == 0, answer  # in place: nothing to write
        # the ToR advertises its own loopback: the static route stays (Calico's BIRD prefers static)
        await felix.feed.send({"10.99.0.1/32": FeedRoute("10.99.0.1/32", "10.30.0.56", "other"),
                               "10.244.2.0/26": FeedRoute("10.244.2.0/26", "10.30.0.56", "other")})
        await until(lambda: "10.244.2.0/26 via 10.30.0.56 dev eth0" in felix.ours(), 15, "the delta applied",
                    felix.diag)
        answer = await asyncio.to_thread(call, str(felix.run_dir / "felixd.sock"), "resync")
        assert answer["changes"] == 0, answer
        assert PEER_ROUTE in felix.ours()
        assert "10.99.0.1/32" not in {prefix for _type, prefix in witness.drain_routes()}  # never rewritten
    finally:
        witness.close()


async def test_someone_deleting_it_gets_it_rewritten(felix: Felix) -> None:
    await until(lambda: PEER_ROUTE in felix.ours(), 15, "the reachableBy route", felix.diag)
    felix.ns.ip("route", "del", "10.99.0.1/32", "proto", "80")
    # the resync interval is an hour: the netlink event brings it back
    await until(lambda: PEER_ROUTE in felix.ours(), 15, "the route repaired", felix.diag)


async def test_a_changed_gateway_moves_it_and_a_deleted_peer_removes_it(felix: Felix) -> None:
    await until(lambda: PEER_ROUTE in felix.ours(), 15, "the reachableBy route", felix.diag)
    felix.write(BASE + TOR.replace("reachableBy: 10.30.0.1", "reachableBy: 10.30.0.2"))
    await until(lambda: "10.99.0.1 via 10.30.0.2 dev eth0" in felix.ours() and PEER_ROUTE not in felix.ours(), 30,
                "the route through the new gateway", felix.diag)
    felix.write(BASE)
    await until(lambda: not any(ln.startswith("10.99.0.1 ") for ln in felix.ours()), 30,
                "the route gone with its BGPPeer", felix.diag)
    assert not any(ln.startswith("fd00:99::1 ") for ln in felix.ours6()), felix.ours6()
    assert "10.244.2.0/26 via 10.30.0.56 dev eth0" in felix.ours()  # the rest untouched
    assert not await asyncio.to_thread(pings, felix.ns, "10.99.0.1"), "no route, no answer"
    felix.write(BASE + TOR)  # back, for a rerun of any test above in the same module
    await until(lambda: PEER_ROUTE in felix.ours(), 30, "the route back", felix.diag)
