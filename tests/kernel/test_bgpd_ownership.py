"""Block ownership with real processes: three hosts (bgpd + felixd, VXLAN pool, node-to-node mesh); one
of them, oc, is given a wrong cluster file in which it holds oa's block. It announces that block; the
other hosts refuse it (they know the block is oa's), and their kernels do not change at all for it,
witnessed by the kernel's own route notifications from before oc started until after. The refusal is
counted by reason, logged once, and shown by `tortiectl bgp rib --peer`. Root only."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    BIN,
    Cluster,
    Host,
    NodeSpec,
    bridged_cluster,
    cluster_docs,
    metric_value,
    pool_doc,
    wait_for,
    write_cluster,
)
from tests.kernel.route_watch import RouteWatch

NODES = [
    NodeSpec("oa", "10.85.0.1", ["10.209.0.0/26"], vxlan_address="10.209.0.1"),
    NodeSpec("ob", "10.85.0.2", ["10.209.0.64/26"], vxlan_address="10.209.0.65"),
    NodeSpec("oc", "10.85.0.3", ["10.209.0.128/26"], vxlan_address="10.209.0.129"),
]
BY_NAME = {n.name: n for n in NODES}
STOLEN = BY_NAME["oa"].blocks[0]
POOL = pool_doc("10.209.0.0/16", vxlan=True)


def kernel(h: Host) -> dict[str, str]:
    """prefix -> the rest of its line, for felixd's routes (`blackhole` kept in front)."""
    out = {}
    for line in h.ns.ip("-4", "route", "show", "proto", "80").stdout.splitlines():
        words = line.split()
        if words and words[0] in ("blackhole", "unreachable", "prohibit"):
            out[words[1]] = " ".join([words[0], *words[2:]])
        elif words:
            out[words[0]] = " ".join(words[1:])
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root()
    require_tools("ip")
    tmp = tmp_path_factory.mktemp("ownership")
    # oc's own file: oa's block belongs to oc (and so oa has none)
    wrong = tmp / "wrong.yaml"
    misled = [NodeSpec("oa", "10.85.0.1", [], vxlan_address="10.209.0.1"), NODES[1],
              NodeSpec("oc", "10.85.0.3", ["10.209.0.128/26", STOLEN], vxlan_address="10.209.0.129")]
    write_cluster(wrong, cluster_docs(misled, [POOL]))
    # the test starts the daemons itself: oa and ob first, oc under watch
    with bridged_cluster(tmp, NODES, cluster_docs(NODES, [POOL]), felixd=True, start=False,
                         configs={"oc": wrong}) as c:
        yield c


def test_a_host_with_a_wrong_affinity_changes_no_other_kernel(cluster: Cluster) -> None:
    c = cluster
    oa, oc = BY_NAME["oa"], BY_NAME["oc"]
    for name in ("oa", "ob"):
        c.bgpd[name].start()
        c.felixd[name].start()
    everyone = c.everyone()
    wait_for(lambda: STOLEN in kernel(c.hosts["ob"]) and oa.blocks[0] in kernel(c.hosts["ob"]), 90,
             "ob's kernel to hold oa's block", diag=everyone)
    before = {name: kernel(c.hosts[name]) for name in ("oa", "ob")}
    watches = {name: RouteWatch(c.hosts[name].ns.name) for name in ("oa", "ob")}
    t0 = time.monotonic()
    try:
        c.bgpd["oc"].start()
        c.felixd["oc"].start()
        # oc comes up and its real block arrives everywhere: the mesh works
        for name in ("oa", "ob"):
            wait_for(lambda name=name: oc.blocks[0] in kernel(c.hosts[name]), 90,
                     f"{name}'s kernel to learn oc's own block", diag=everyone)
        d = c.bgpd["ob"]
        wait_for(lambda: any(r["prefix"] == STOLEN for r in d.rib(peer=oc.address)), 30,
                 "ob to hold oc's announcement of oa's block as refused", diag=everyone)
        for name, w in watches.items():
            changes = w.changes({STOLEN}, after=t0)
            assert not changes, f"{name}'s kernel changed for {STOLEN}: {changes}"
            now = kernel(c.hosts[name])
            assert now.get(STOLEN) == before[name].get(STOLEN), (name, now.get(STOLEN), before[name].get(STOLEN))
        # oc announces it: its own kernel has the block as a local one
        wait_for(lambda: kernel(c.hosts["oc"]).get(STOLEN, "").startswith("blackhole"), 30,
                 "oc to hold the stolen block as local", diag=everyone)
        # shown with the reason, counted, logged once
        (row,) = [r for r in d.rib(peer=oc.address) if r["prefix"] == STOLEN]
        assert row["refused"] and not row["best"] and "not-block-owner" in row["reason"], row
        assert "node oa" in row["reason"] and "node oc" in row["reason"], row
        shown = subprocess.run([str(BIN / "tortiectl"), "bgp", "rib", "--peer", oc.address, "--run-dir",
                                str(d.run_dir), "-c", str(c.config)], capture_output=True, text=True, timeout=30)
        line = next(x for x in shown.stdout.splitlines() if x.startswith(STOLEN))
        assert "refused" in line and "not-block-owner" in line, shown.stdout
        assert (metric_value(d.metrics(), "tortie_bgp_prefixes_rejected_total", peer=oc.address,
                             reason="not-block-owner") or 0) >= 1
        assert d.log_path.read_text().count(f"route {STOLEN} refused by block ownership") == 1
        # oa's own view: its block from oc is refused too, and oa keeps its blackhole
        assert any(r["prefix"] == STOLEN and r.get("refused") for r in c.bgpd["oa"].rib(peer=oc.address))
        # oc is told the truth (its file fixed, reloaded): it withdraws, and still nothing changes elsewhere
        write_cluster(c.bgpd["oc"].config, cluster_docs(NODES, [POOL]))
        wait_for(lambda: not any(r["prefix"] == STOLEN for r in d.rib(peer=oc.address)), 60,
                 "oc to withdraw oa's block", diag=everyone)
        for name, w in watches.items():
            assert not w.changes({STOLEN}, after=t0), name
        # and oc itself now routes oa's block to oa (its felixd replans on the reload: wait for it)
        wait_for(lambda: "vxlan.calico" in kernel(c.hosts["oc"]).get(STOLEN, ""), 30,
                 "oc's kernel to route oa's block to oa", diag=everyone)
    finally:
        for w in watches.values():
            w.close()
