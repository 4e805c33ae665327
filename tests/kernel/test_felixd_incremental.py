"""tortie-felixd as a process, fed by a scripted route feed: the incremental data path.

A feed delta costs no kernel read and writes only the changed prefixes; felixd's own writes never
make it resync, while someone else deleting or rewriting one of its routes is repaired at once (by
rewriting that route, not by a full resync); a change of the host's addresses rebuilds the
planner's indexes. The counts come from felixd's status (`counts`) and, independently, from the
kernel's own notifications (a ChangeWitness in the namespace).
"""

from __future__ import annotations

import subprocess
import sys
import time
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
CLUSTER = "---\n".join([
    f"{HEAD}kind: Node\nmetadata: {{name: me}}\nspec: {{bgp: {{ipv4Address: 10.30.0.206/24}}}}\n",
    f"{HEAD}kind: Node\nmetadata: {{name: other}}\nspec: {{bgp: {{ipv4Address: 10.30.0.56/24}}}}\n",
    f"{HEAD}kind: IPPool\nmetadata: {{name: pods}}\nspec: {{cidr: 10.0.0.0/8, blockSize: 26}}\n",
    f"{HEAD}kind: BlockAffinity\nmetadata: {{name: me}}\nspec: {{node: me, cidr: 10.244.0.0/26}}\n",
])
LOAD = 5000  # routes streamed as deltas into a running felixd


def block(i: int) -> str:
    return f"10.{100 + (i >> 10)}.{(i >> 2) & 255}.{(i & 3) * 64}/26"


@dataclass
class Felix:
    ns: Netns
    run_dir: Path
    feed: ScriptedFeed
    log: Path
    proc: subprocess.Popen[bytes]

    def status(self) -> dict[str, Any]:
        return call(str(self.run_dir / "felixd.sock"), "status")  # type: ignore[no-any-return]

    def counts(self) -> dict[str, int]:
        return self.status()["counts"]  # type: ignore[no-any-return]

    def ours(self) -> list[str]:
        return route_lines(self.ns, "-4", "proto", "80")



@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def felix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Felix]:
    require_root()
    tmp = tmp_path_factory.mktemp("felixd-inc")
    with NetnsSet(prefix="tfi") as nss:
        ns, gw = nss.add("host"), nss.add("gw")
        nss.veth(ns, "eth0", gw, "up0")
        ns.ip("addr", "add", "10.30.0.206/24", "dev", "eth0")
        gw.ip("addr", "add", "10.30.0.1/24", "dev", "up0")
        config = tmp / "cluster.yaml"
        config.write_text(CLUSTER)
        run_dir = tmp / "run"
        run_dir.mkdir()
        # one route in the snapshot: the host forwards already (the first learned route turns IP
        # forwarding on, which takes a full sync)
        first = block(LOAD + 10)
        feed = await ScriptedFeed(str(run_dir / "feed.sock"), {first: FeedRoute(first, "10.30.0.56", "other")}).start()
        log = tmp / "felixd.log"
        with open(log, "ab") as out:
            proc = nss.spawn(ns, str(BIN / "tortie-felixd"), "--config", str(config), "--node", "me",
                             "--run-dir", str(run_dir), "--resync-interval", "3600", "--metrics-port", "0",
                             stdout=out, stderr=subprocess.STDOUT)
        f = Felix(ns, run_dir, feed, log, proc)
        try:
            # start-up's full sync, then the snapshot's
            await until(lambda: f.counts().get("full_syncs", 0) >= 2, 30, "felixd synced",
                        lambda: log.read_text()[-3000:])
            yield f
        finally:
            await feed.close()


async def test_a_load_of_deltas_causes_no_resync(felix: Felix) -> None:
    """Thousands of routes streamed as deltas: no full sync, no kernel read, and felixd's own writes
    (every one announced by the kernel) wake nothing."""
    before = felix.counts()
    await felix.feed.send({block(i): FeedRoute(block(i), "10.30.0.56", "other") for i in range(LOAD)})
    await until(lambda: len(felix.ours()) >= LOAD + 2, 60, f"{LOAD} routes in the kernel",
                lambda: felix.log.read_text()[-3000:])
    after = felix.counts()
    assert after.get("full_syncs", 0) == before.get("full_syncs", 0), (before, after)
    assert after["route_dumps"] == before["route_dumps"]
    assert after.get("host_reads", 0) == before.get("host_reads", 0)
    assert after.get("repairs", 0) == 0
    assert after["route_messages"] - before["route_messages"] == LOAD  # each route written once
    assert after.get("deltas", 0) > before.get("deltas", 0)


async def test_a_delta_reads_nothing_and_writes_only_its_prefixes(felix: Felix) -> None:
    await until(lambda: len(felix.ours()) >= LOAD + 2, 60, "the load in the kernel")
    witness = ChangeWitness(felix.ns.name)
    try:
        witness.drain()
        before = felix.counts()
        moved, gone = block(7), block(8)
        await felix.feed.send({moved: FeedRoute(moved, "10.30.0.1"), gone: None})
        await until(lambda: f"{moved} via 10.30.0.1 dev eth0" in felix.ours()
                    and not any(ln.startswith(gone) for ln in felix.ours()), 15, "delta applied")
        after = felix.counts()
        # the kernel saw exactly these two writes, nothing else (a resync of an unchanged kernel would
        # write nothing either: its dump is what the counts rule out)
        assert sorted(witness.drain_routes()) == sorted([(24, moved), (25, gone)])
        assert after["route_dumps"] == before["route_dumps"]
        assert after["route_messages"] - before["route_messages"] == 2
        assert after.get("full_syncs", 0) == before.get("full_syncs", 0)
        assert after.get("index_builds", 0) == before.get("index_builds", 0)
    finally:
        witness.close()


async def test_someone_elses_change_to_a_felixd_route_is_repaired_at_once(felix: Felix) -> None:
    victim, rewritten = block(100), block(101)
    await until(lambda: f"{victim} via 10.30.0.56 dev eth0" in felix.ours(), 30, "routes in place")
    before = felix.counts()
    felix.ns.ip("route", "del", victim, "proto", "80")
    felix.ns.ip("route", "replace", rewritten, "via", "10.30.0.99", "dev", "eth0", "proto", "80")
    t0 = time.monotonic()
    # the resync interval is an hour: only the netlink events can bring these back
    await until(lambda: f"{victim} via 10.30.0.56 dev eth0" in felix.ours()
                and f"{rewritten} via 10.30.0.56 dev eth0" in felix.ours(), 10, "routes repaired",
                lambda: "\n".join(felix.ours()[:5]))
    took = time.monotonic() - t0
    await until(lambda: felix.counts().get("repairs", 0) - before.get("repairs", 0) >= 2, 5, "repairs counted")
    after = felix.counts()
    # repaired by rewriting those two routes, not by a full resync (no dump of the whole table)
    assert after["route_dumps"] == before["route_dumps"] and after.get("full_syncs", 0) == before.get("full_syncs", 0)
    assert after["repairs"] - before.get("repairs", 0) == 2
    assert took < 5


async def test_a_host_address_change_rebuilds_the_indexes(felix: Felix) -> None:
    """A next hop on a subnet the host does not have is unreachable; adding the address makes the
    host's network change, felixd rebuild its indexes, and the route appear."""
    far = "10.250.0.0/26"
    before = felix.counts()
    await felix.feed.send({far: FeedRoute(far, "10.31.0.7")})
    await until(lambda: felix.counts().get("deltas", 0) > before.get("deltas", 0), 10, "delta planned")
    assert not any(ln.startswith(far) for ln in felix.ours())  # not reachable: not installed
    felix.ns.ip("addr", "add", "10.31.0.206/24", "dev", "eth0")
    await until(lambda: f"{far} via 10.31.0.7 dev eth0" in felix.ours(), 15, "route through the new subnet",
                lambda: felix.log.read_text()[-2000:])
    mid = felix.counts()
    assert mid["index_builds"] > before["index_builds"] and mid["host_reads"] > before["host_reads"]
    felix.ns.ip("addr", "del", "10.31.0.206/24", "dev", "eth0")
    await until(lambda: not any(ln.startswith(far) for ln in felix.ours()), 15, "route gone with the subnet")
    assert felix.counts()["index_builds"] > mid["index_builds"]
    # everything else stayed: a host change replans every route, and nothing else moved
    assert len(felix.ours()) >= LOAD
