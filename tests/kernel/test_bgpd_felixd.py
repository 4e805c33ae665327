"""tortie-bgpd and tortie-felixd together on three hosts with a VXLAN pool: the blocks bgpd learns end
up as `<block> via <vtep> dev vxlan.calico onlink` routes, traffic crosses the overlay, and a remote bgpd
killed with -9 leaves the routes in place (graceful restart, stale routes kept). Root only."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    Cluster,
    Host,
    NodeSpec,
    bridged_cluster,
    cluster_docs,
    pool_doc,
    wait_for,
)

NODES = [
    NodeSpec("fa", "10.82.0.1", ["10.206.0.0/26"], vxlan_address="10.206.0.1"),
    NodeSpec("fb", "10.82.0.2", ["10.206.0.64/26"], vxlan_address="10.206.0.65"),
    NodeSpec("fc", "10.82.0.3", ["10.206.0.128/26"], vxlan_address="10.206.0.129"),
]
BY_NAME = {n.name: n for n in NODES}


def _expected_routes(name: str) -> set[str]:
    return {f"{o.blocks[0]} via {o.vxlan_address} dev vxlan.calico onlink" for o in NODES if o.name != name}


def _kernel_routes(h: Host) -> set[str]:
    out = h.ns.ip("-4", "route", "show", "proto", "80").stdout
    return {" ".join(line.split()) for line in out.splitlines() if "vxlan.calico" in line}


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root()
    require_tools("ip", "ping")
    docs = cluster_docs(NODES, [pool_doc("10.206.0.0/16", vxlan=True)])
    with bridged_cluster(tmp_path_factory.mktemp("overlay"), NODES, docs, felixd=True) as o:
        yield o


def test_felixd_programs_vxlan_routes_and_keeps_them_when_a_remote_bgpd_dies(overlay: Cluster) -> None:
    everyone = overlay.everyone()
    for n in NODES:
        h = overlay.hosts[n.name]
        wait_for(lambda h=h, n=n: _kernel_routes(h) == _expected_routes(n.name), 90,
                 f"felixd on {n.name} to program the other blocks over vxlan.calico",
                 diag=lambda h=h: f"{h.ns.ip('-4', 'route').stdout}\n{everyone()}")
    fa = overlay.hosts["fa"]

    def ping(ns_host: Host, target: str) -> bool:
        return ns_host.ns.exec("ping", "-c", "1", "-W", "1", target, check=False).returncode == 0

    # the overlay carries traffic: fa reaches fc's VTEP address through the VXLAN route
    wait_for(lambda: ping(fa, BY_NAME["fc"].vxlan_address or ""), 30, "fa to ping fc's VTEP over VXLAN")

    overlay.bgpd["fc"].kill()  # kill -9 the *remote* bgpd; its felixd and kernel stay
    wait_for(lambda: all(d.learned().get("10.206.0.128/26", {}).get("stale") for d in
                         (overlay.bgpd["fa"], overlay.bgpd["fb"])), 60,
             "fa and fb to mark fc's block stale", diag=everyone)
    # an observation window: every poll must still see every route in every kernel
    until = time.monotonic() + 5.0
    while time.monotonic() < until:
        for n in NODES:
            assert _kernel_routes(overlay.hosts[n.name]) == _expected_routes(n.name), (n.name, everyone())
        time.sleep(0.1)
    assert ping(fa, BY_NAME["fc"].vxlan_address or "")
