"""BFD between tortie hosts, real processes in namespaces: three hosts (bgpd + felixd each, VXLAN pool)
in a node-to-node mesh with `bfd.tortie.io/enabled` on the default BGPConfiguration.

A host's link is cut (link down inside its namespace, then an nftables drop): its block must leave
every other host's kernel within 1 s, timed against the kernel's own route notifications (route_watch),
and come back by itself when the link returns. Without BFD the same cut keeps the routes for the hold
time. Malformed BFD packets are dropped and counted and flap nothing. Root only."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    BIN,
    Bgpd,
    Cluster,
    Host,
    NodeSpec,
    bridged_cluster,
    cluster_docs,
    diag,
    metric_value,
    peer_doc,
    pool_doc,
    wait_for,
    write_cluster,
)
from tests.kernel.route_watch import RouteWatch

NODES = [
    NodeSpec("ba", "10.84.0.1", ["10.208.0.0/26"], vxlan_address="10.208.0.1"),
    NodeSpec("bb", "10.84.0.2", ["10.208.0.64/26"], vxlan_address="10.208.0.65"),
    NodeSpec("bc", "10.84.0.3", ["10.208.0.128/26"], vxlan_address="10.208.0.129"),
]
BY_NAME = {n.name: n for n in NODES}
VICTIM = BY_NAME["bb"]
OBSERVERS = ("ba", "bc")
LIMIT = 1.0  # seconds from the cut until the block is out of every other kernel (issue 16)


def config_doc(annotations: dict[str, str], mesh: bool = True) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
            "metadata": {"name": "default", "annotations": annotations},
            "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": mesh}}


BFD_ON = {"bfd.tortie.io/enabled": "true"}

def kernel_blocks(h: Host) -> set[str]:
    out = h.ns.ip("-4", "route", "show", "proto", "80").stdout
    return {line.split()[0] for line in out.splitlines() if "vxlan.calico" in line}


def others(name: str) -> set[str]:
    return {n.blocks[0] for n in NODES if n.name != name}


def bfd_states(d: Bgpd) -> dict[str, str | None]:
    return {p["address"]: p.get("bfd") for p in d.status()["peers"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root()
    require_tools("ip", "nft")
    docs = cluster_docs(NODES, [pool_doc("10.208.0.0/16", vxlan=True)], config=config_doc(BFD_ON))
    with bridged_cluster(tmp_path_factory.mktemp("bfd"), NODES, docs, felixd=True) as c:
        settle(c, 90)
        yield c


def settle(c: Cluster, timeout: float) -> float:
    """Wait until every session is Established with BFD Up and every kernel holds every other block;
    returns how long it took."""
    t0 = time.monotonic()
    everyone = c.everyone()
    for n in NODES:
        d, h = c.bgpd[n.name], c.hosts[n.name]
        peers = [o.address for o in NODES if o is not n]
        wait_for(lambda d=d, peers=peers: d.established(*peers) and all(
            bfd_states(d).get(p) == "Up" for p in peers), timeout, f"{n.name}: sessions and BFD up",
            diag=everyone)
        wait_for(lambda h=h, n=n: kernel_blocks(h) == others(n.name), timeout,
                 f"{n.name}'s kernel to hold every other block", diag=everyone)
    return time.monotonic() - t0


def cut_and_time(c: Cluster, cut: list[str], heal: list[str], label: str) -> dict[str, float]:
    """Cut the victim's path with `cut` (a command in its namespace); return per observer how long its
    kernel took to lose the victim's block; heal it and check everything comes back by itself."""
    block = VICTIM.blocks[0]
    victim = c.hosts[VICTIM.name]
    watches = {name: RouteWatch(c.hosts[name].ns.name) for name in OBSERVERS}
    everyone = c.everyone()
    took: dict[str, float] = {}
    try:
        t_cut = time.monotonic()
        victim.ns.exec(*cut)  # the clock started before the command: its own cost counts against us
        for name, w in watches.items():
            at = w.wait("del", block, t_cut, 30)
            assert at is not None, f"{label}: {block} never left {name}'s kernel\n{everyone()}"
            took[name] = at - t_cut
        print(f"{label}: {block} out of the kernels of " +
              ", ".join(f"{k} after {v * 1000:.0f} ms" for k, v in took.items()))
        for name in OBSERVERS:
            # the session really went down by BFD: Cease/10 sent, and BFD Down on both observers
            nb = c.bgpd[name].neighbor(VICTIM.address)
            assert nb["bfd_session"]["state"] != "Up", nb["bfd_session"]
            assert "BFD" in (nb["last_notification_sent"] or "") or nb["state"] != "Established"
            # the third host is untouched
            third = next(o for o in OBSERVERS if o != name)
            assert BY_NAME[third].blocks[0] in kernel_blocks(c.hosts[name])
        t_heal = time.monotonic()
        victim.ns.exec(*heal)
        for name, w in watches.items():
            assert w.wait("add", block, t_heal, 60) is not None, f"{label}: {block} not back at {name}\n{everyone()}"
        back = settle(c, 60)
        print(f"{label}: healed; every session, BFD and route back {time.monotonic() - t_heal:.1f} s after "
              f"(settled {back:.1f} s)")
    finally:
        for w in watches.values():
            w.close()
    return took


def test_bfd_runs_on_every_mesh_session_and_tortiectl_shows_it(cluster: Cluster) -> None:
    d = cluster.bgpd["ba"]
    nb = d.neighbor(VICTIM.address)
    s = nb["bfd_session"]
    assert s["state"] == "Up" and s["remote_state"] == "Up"
    assert (s["min_rx_ms"], s["min_tx_ms"], s["multiplier"]) == (300, 300, 3)
    assert s["detection_time_ms"] == 900 and s["local_address"] == BY_NAME["ba"].address
    assert s["packets"]["received"] > 0 and s["local_discriminator"] and s["remote_discriminator"]
    common = ["--run-dir", str(d.run_dir), "-c", str(cluster.config)]
    status = subprocess.run([str(BIN / "tortiectl"), "node", "status", *common], capture_output=True, text=True,
                            timeout=30)
    assert status.returncode == 0, status.stderr
    assert "BFD" in status.stdout and "| Up " in status.stdout, status.stdout
    neighbors = subprocess.run([str(BIN / "tortiectl"), "bgp", "neighbors", VICTIM.address, *common],
                               capture_output=True, text=True, timeout=30)
    assert "BFD:" in neighbors.stdout and "Up for" in neighbors.stdout and "detection 900 ms" in neighbors.stdout, \
        neighbors.stdout
    text = d.metrics()
    assert metric_value(text, "tortie_bgp_bfd_session_state", peer=VICTIM.address, state="up") == 1
    assert metric_value(text, "tortie_bgp_bfd_detection_time_seconds", peer=VICTIM.address) == pytest.approx(0.9)
    assert (metric_value(text, "tortie_bgp_bfd_packets_received_total", peer=VICTIM.address) or 0) > 0


def test_link_down_takes_the_block_out_of_every_kernel_within_a_second(cluster: Cluster) -> None:
    took = cut_and_time(cluster, ["ip", "link", "set", "eth0", "down"], ["ip", "link", "set", "eth0", "up"],
                        "link down")
    assert max(took.values()) < LIMIT, took
    text = cluster.bgpd["ba"].metrics()
    assert (metric_value(text, "tortie_bgp_bfd_failures_total", peer=VICTIM.address) or 0) >= 1


def test_an_nftables_drop_takes_the_block_out_within_a_second(cluster: Cluster) -> None:
    ruleset = ("table inet tortie_cut { chain in { type filter hook input priority -300; policy drop; }; "
               "chain out { type filter hook output priority -300; policy drop; }; }")
    took = cut_and_time(cluster, ["nft", ruleset], ["nft", "delete", "table", "inet", "tortie_cut"], "nftables drop")
    assert max(took.values()) < LIMIT, took


def test_malformed_bfd_packets_are_dropped_counted_and_flap_nothing(cluster: Cluster) -> None:
    target = BY_NAME["ba"]
    d = cluster.bgpd["ba"]
    before = d.neighbor(VICTIM.address)
    downs = before["bfd_session"]["packets"]["received"]
    script = f"""
import socket, struct
good = struct.pack(">BBBBIIIII", 0x20, 0xC0, 3, 24, 0x1234, 0, 1000000, 300000, 0)
bad = [
    (b"\\x00" * 10, 255),                                         # short
    (bytes([0x40]) + good[1:], 255),                              # version 2
    (good[:2] + b"\\x00" + good[3:], 255),                        # detect mult 0
    (good[:3] + bytes([40]) + good[4:], 255),                     # length beyond the datagram
    (good[:4] + b"\\x00\\x00\\x00\\x00" + good[8:], 255),         # my discriminator 0
    (good[:8] + b"\\xde\\xad\\xbe\\xef" + good[12:], 255),        # your discriminator nobody gave out
    (bytes([0x20, 0xC0]) + good[2:], 64),                         # Up with your discriminator 0, TTL 64
]
for data, ttl in bad:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.bind(("{VICTIM.address}", 0))
    for _ in range(20):
        s.sendto(data, ("{target.address}", 3784))
    s.close()
"""
    subprocess.run(["ip", "netns", "exec", cluster.hosts[VICTIM.name].ns.name, "python3", "-c", script],
                   check=True, timeout=30)
    want = {"length": 40, "version": 20, "detect-mult": 20, "my-discriminator": 20, "your-discriminator": 20,
            "ttl": 20}

    def counted() -> bool:
        text = d.metrics()
        return all((metric_value(text, "tortie_bgp_bfd_packets_dropped_total", reason=r) or 0) >= n
                   for r, n in want.items())

    wait_for(counted, 20, "every malformed packet counted by its reason",
             diag=lambda: "\n".join(x for x in d.metrics().splitlines() if "dropped" in x))
    # the peer's own packets still get through (one is due every 300 ms at most; the flood and the
    # counting may take less than that, so wait for the next one rather than expect it already)
    after = wait_for(lambda: (n := d.neighbor(VICTIM.address))["bfd_session"]["packets"]["received"] > downs and n,
                     5, "the peer's next BFD packet accepted after the flood")
    assert after["bfd_session"]["state"] == "Up" and after["state"] == "Established"
    assert after["bfd_session"]["failures"] == before["bfd_session"]["failures"]
    assert json.dumps(after["bfd_session"]["packets"]["dropped"]) == "{}"  # none blamed on the session


def test_without_bfd_a_cut_keeps_the_routes_for_the_hold_time(cluster: Cluster) -> None:
    """The control: BFD off (a BGPPeer mesh without the annotations). The same link cut leaves the block
    in the other kernels: nothing notices before the 90 s hold time (keepaliveTime no longer shortens it,
    and its expiry is a graceful restart since RFC 8538), so the block is still there well after BFD's
    limit."""
    docs = cluster_docs(NODES, [pool_doc("10.208.0.0/16", vxlan=True)], config=config_doc({}, mesh=False),
                        peers=[peer_doc("no-bfd", peerSelector="all()")])
    write_cluster(cluster.config, docs)
    everyone = diag(*cluster.bgpd.values())
    for n in NODES:
        d = cluster.bgpd[n.name]
        peers = [o.address for o in NODES if o is not n]
        wait_for(lambda d=d, peers=peers: d.established(*peers) and all(
            d.neighbor(p)["bfd_session"] is None for p in peers), 90,
            f"{n.name}: BGPPeer sessions without BFD", diag=everyone)
        wait_for(lambda n=n: kernel_blocks(cluster.hosts[n.name]) == others(n.name), 60,
                 f"{n.name}'s kernel to hold every other block", diag=everyone)
    block = VICTIM.blocks[0]
    watches = {name: RouteWatch(cluster.hosts[name].ns.name) for name in OBSERVERS}
    try:
        t_cut = time.monotonic()
        cluster.hosts[VICTIM.name].ns.exec("ip", "link", "set", "eth0", "down")
        # three times BFD's limit: no kernel lets the block go (each wait runs from the cut)
        for name, w in watches.items():
            at = w.wait("del", block, t_cut, 3 * LIMIT)
            assert at is None, (name, at - t_cut, everyone())
            assert block in kernel_blocks(cluster.hosts[name]), name
        print(f"without BFD: {block} still in {', '.join(watches)} {time.monotonic() - t_cut:.1f} s after the cut")
    finally:
        cluster.hosts[VICTIM.name].ns.exec("ip", "link", "set", "eth0", "up")
        for w in watches.values():
            w.close()
