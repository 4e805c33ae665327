"""Configuration reload by difference with live sessions: a three-node tortie-bgpd mesh gets a BGPPeer
for a fourth speaker (BIRD 2, eBGP) written into its cluster file; the mesh sessions stay up untouched
and the new one comes up; removing the BGPPeer takes only that session down. Root only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.daemons import Bird2, DaemonNeighbor, Route
from lab.netns import NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    PREFIX,
    Bgpd,
    NodeSpec,
    bridged_hosts,
    cluster_docs,
    diag,
    metric_value,
    peer_doc,
    pool_doc,
    wait_for,
    write_cluster,
)

NODES = [
    NodeSpec("ra", "10.81.0.1", ["10.204.0.0/26"]),
    NodeSpec("rb", "10.81.0.2", ["10.204.0.64/26"]),
    NodeSpec("rc", "10.81.0.3", ["10.204.0.128/26"]),
]
BIRD_ADDR, BIRD_AS, BIRD_PREFIX = "10.81.0.4", 65001, "10.204.9.0/24"
POOLS = [pool_doc("10.204.0.0/16")]


@dataclass
class Reload:
    nss: NetnsSet
    bgpd: dict[str, Bgpd]
    bird: Bird2
    config: Path


@pytest.fixture(scope="module")
def reload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reload]:
    require_root()
    require_tools("ip", "curl")
    if Bird2.missing():
        pytest.skip(f"BIRD 2 missing: {', '.join(Bird2.missing())}")
    tmp = tmp_path_factory.mktemp("reload")
    config = tmp / "cluster.yaml"
    write_cluster(config, cluster_docs(NODES, POOLS))
    nss = NetnsSet(prefix=PREFIX)
    try:
        hosts = bridged_hosts(nss, [(n.name, n.address) for n in NODES] + [("bird", BIRD_ADDR)])
        daemons = {n.name: Bgpd(nss, hosts[n.name], config, tmp / "run" / n.name) for n in NODES}
        for d in daemons.values():
            d.start()
        everyone = diag(*daemons.values())
        for n in NODES:
            want = {o.blocks[0] for o in NODES if o is not n}
            wait_for(lambda d=daemons[n.name], want=want: set(d.learned()) == want, 60,
                     f"{n.name} to learn the mesh's blocks", diag=everyone)
        bird = Bird2(hosts["bird"].ns, tmp / "bird", router_id=BIRD_ADDR, asn=BIRD_AS, owner=nss,
                     neighbors=[DaemonNeighbor(n.address, 64512) for n in NODES], routes=[Route(BIRD_PREFIX)])
        bird.start()
        yield Reload(nss, daemons, bird, config)
    finally:
        nss.close()


def _mesh_view(d: Bgpd) -> dict[str, dict[str, Any]]:
    """Per mesh peer: what must not move when an unrelated peer is added or removed."""
    metrics = d.metrics()
    out = {}
    for nb in d.call("neighbors"):
        if nb["peer_type"] != "node-to-node mesh":
            continue
        out[nb["address"]] = {
            "since": nb["since"], "uptime": nb["uptime_seconds"], "state": nb["state"],
            "updates_in": nb["messages"]["received"].get("UPDATE", 0),
            "transitions": metric_value(metrics, "tortie_bgp_established_transitions_total",
                                        peer=nb["address"]),
        }
    return out


def _assert_mesh_untouched(before: dict[str, dict[str, dict[str, Any]]], bgpd: dict[str, Bgpd]) -> None:
    for name, d in bgpd.items():
        after = _mesh_view(d)
        assert set(after) == set(before[name])
        for peer, was in before[name].items():
            now = after[peer]
            assert now["state"] == "Established", (name, peer, now)
            assert now["since"] == was["since"], (name, peer, was, now)
            assert now["uptime"] >= was["uptime"], (name, peer, was, now)  # the session did not restart
            assert now["transitions"] == was["transitions"] == 1, (name, peer, was, now)
            # no route churn on the mesh: nothing learned from the new peer is sent to iBGP mesh peers
            assert now["updates_in"] == was["updates_in"], (name, peer, was, now)


def _write(r: Reload, with_bird: bool) -> None:
    peers = [peer_doc("bird", peerIP=BIRD_ADDR, asNumber=BIRD_AS)] if with_bird else []
    write_cluster(r.config, cluster_docs(NODES, POOLS, peers=peers))


def test_adding_a_bgppeer_keeps_the_mesh_sessions_and_brings_the_new_one_up(reload: Reload) -> None:
    before = {name: _mesh_view(d) for name, d in reload.bgpd.items()}
    assert all(len(v) == 2 for v in before.values()), before
    _write(reload, with_bird=True)
    everyone = diag(*reload.bgpd.values())
    for name, d in reload.bgpd.items():
        wait_for(lambda d=d: d.established(BIRD_ADDR), 60, f"{name}'s session with BIRD", diag=everyone)
        wait_for(lambda d=d: BIRD_PREFIX in d.learned(), 30, f"{name} to learn {BIRD_PREFIX}", diag=everyone)
        row = d.learned()[BIRD_PREFIX]
        assert row["next_hop"] == BIRD_ADDR and row["as_path"] == str(BIRD_AS), row
        peer = d.peer(BIRD_ADDR)
        assert peer is not None and peer["peer_type"] == "global" and peer["asn"] == BIRD_AS
    # the new peer learns every node's block (eBGP: each node announces its own, next hop self)
    reload.bird.wait_prefixes([n.blocks[0] for n in NODES], timeout=30)
    _assert_mesh_untouched(before, reload.bgpd)


def test_removing_the_bgppeer_drops_only_that_session(reload: Reload) -> None:
    # self-contained when run alone: the BGPPeer is there and up before it is removed
    _write(reload, with_bird=True)
    for name, d in reload.bgpd.items():
        wait_for(lambda d=d: d.established(BIRD_ADDR) and BIRD_PREFIX in d.learned(), 60,
                 f"{name}'s session with BIRD and its route", diag=diag(d))
    before = {name: _mesh_view(d) for name, d in reload.bgpd.items()}
    _write(reload, with_bird=False)
    for name, d in reload.bgpd.items():
        wait_for(lambda d=d: d.peer(BIRD_ADDR) is None and BIRD_PREFIX not in d.learned(), 30,
                 f"{name} to drop the BIRD peer and its route", diag=diag(d))
    # deconfigured peers get Cease/3 (Peer De-configured, RFC 4486), which BIRD shows as the reason
    wait_for(lambda: not any(reload.bird.established(n.address) for n in NODES), 30,
             "BIRD to see its sessions closed")
    shown = reload.bird.cli("show", "protocols", "all")
    assert "de-configured" in shown.lower(), shown
    _assert_mesh_untouched(before, reload.bgpd)
    for n in NODES:
        assert set(reload.bgpd[n.name].learned()) == {o.blocks[0] for o in NODES if o is not n}


@pytest.mark.parametrize(("spec", "refusal"), [
    ({"peerIP": BIRD_ADDR, "asNumber": BIRD_AS, "reachableBy": "fd00::254"},
     "spec.reachableBy: ReachableBy and PeerIP address family mismatched"),
    ({"peerIP": BIRD_ADDR, "asNumber": BIRD_AS, "localASNumber": 0}, "spec.localASNumber: AS 0 is reserved"),
])
def test_a_refused_bgppeer_leaves_the_running_configuration_alone(reload: Reload, spec: dict[str, Any],
                                                                   refusal: str) -> None:
    """A Calico field tortie refuses (or breaks a rule) in the cluster file: every daemon reports the file,
    document and field, counts an invalid reload, and keeps its sessions exactly as they were."""
    _write(reload, with_bird=False)
    for name, d in reload.bgpd.items():
        wait_for(lambda d=d: d.peer(BIRD_ADDR) is None, 30, f"{name} without the BIRD peer", diag=diag(d))
    before = {name: _mesh_view(d) for name, d in reload.bgpd.items()}
    invalid = {name: metric_value(d.metrics(), "tortie_bgp_config_reloads_total", result="invalid") or 0
               for name, d in reload.bgpd.items()}
    write_cluster(reload.config, cluster_docs(NODES, POOLS, peers=[peer_doc("bird", **spec)]))
    for name, d in reload.bgpd.items():
        wait_for(lambda d=d, n=name: (metric_value(d.metrics(), "tortie_bgp_config_reloads_total", result="invalid")
                                      or 0) > invalid[n], 30, f"{name} to count the invalid reload", diag=diag(d))
        logged = d.log_path.read_text(errors="replace")
        assert "configuration not reloaded, keeping the running one" in logged
        assert f"{reload.config}: document " in logged and "(BGPPeer bird)" in logged and refusal in logged
        assert d.peer(BIRD_ADDR) is None
    _assert_mesh_untouched(before, reload.bgpd)
    _write(reload, with_bird=False)


def _resident_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def test_reloads_leave_no_memory_behind(reload: Reload) -> None:
    """Thirty reloads of a cluster file with 200 more Nodes (no BGP: no peers, no routes): the daemon's
    resident set stays flat. Each reload once left its whole model behind (kept for a watch `get` that
    no daemon calls, and the YAML nodes in one shared constructor): about half a megabyte each here."""
    d = reload.bgpd["ra"]
    assert d.proc is not None
    base = cluster_docs(NODES, POOLS)
    filler = [{"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": f"filler-{i}"}}
              for i in range(200)]

    def reloads() -> float:
        return metric_value(d.metrics(), "tortie_bgp_config_reloads_total", result="ok") or 0

    try:
        resident = {}
        for i in range(1, 36):
            before = reloads()
            marker = {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": f"round-{i}"}}
            write_cluster(reload.config, [*base, *filler, marker])
            wait_for(lambda before=before: reloads() > before, 30, f"reload {i}", diag=diag(d))
            if i in (5, 35):
                resident[i] = _resident_kb(d.proc.pid)
        grown = resident[35] - resident[5]
        assert grown < 4096, f"30 reloads left {grown} KB behind ({resident})"
        assert d.established(*(n.address for n in NODES if n.name != "ra"))  # nothing else moved
    finally:
        _write(reload, with_bird=False)
