"""felixd's kernel side on a kernel with IP-in-IP: tunl0 and the article's routes from a DesiredState.

The Reconciler programs each node namespace from the state the planner would produce for an IPIP
pool; the pods' traffic must then cross the underlay encapsulated, a second reconcile must write
nothing, and a switch to direct routing and back must move the traffic off and onto the tunnel.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from felixd.reconcile import Reconciler, ReconcileResult
from felixd.state import RTPROT_TORTIE, DesiredState, IpipDevice, Mode, route, route_map
from tests.vm.inside.ipip_support import (
    Capture,
    Cluster,
    Node,
    assert_all_received,
    assert_pod_ping_encapsulated,
    encapsulated,
    load_ipip,
    ping,
    two_nodes,
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    load_ipip()
    with two_nodes() as c:
        yield c


def ipip_state(local: Node, remote: Node) -> DesiredState:
    r = route(remote.block, gateway=remote.address, dev="tunl0", onlink=True, mode=Mode.IPIP, pool="ipip-pool")
    return DesiredState(routes=route_map(r), ipip=IpipDevice(address=f"{local.tunnel}/32", mtu=1480))


def direct_state(remote: Node) -> DesiredState:
    r = route(remote.block, gateway=remote.address, dev="eth0", mode=Mode.DIRECT, pool="direct-pool")
    return DesiredState(routes=route_map(r))


async def apply(node: Node, desired: DesiredState) -> ReconcileResult:
    async with Reconciler(netns=node.ns.name) as rec:
        res = await rec.reconcile(desired)
        assert not rec.device_stats.ipip_unsupported, "felixd thinks this kernel has no IP-in-IP"
    assert not res.route_errors and not res.routes_unsupported and not res.routes_conflicting, res
    return res


async def test_felixd_sets_up_tunl0_and_the_articles_routes(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    await apply(a, ipip_state(a, b))
    shown = a.ns.ip("route", "show", "proto", str(RTPROT_TORTIE)).stdout.split()
    assert shown == [b.block, "via", b.address, "dev", "tunl0", "onlink"], shown
    link = a.ns.ip("-d", "link", "show", "tunl0").stdout
    assert "ipip" in link and "mtu 1480" in link and ",UP" in link, link
    addr = a.ns.ip("-4", "-br", "addr", "show", "tunl0").stdout.split()
    assert addr[2:] == [f"{a.tunnel}/32"], addr


async def test_pod_ping_over_felixd_routes_travels_ip_in_ip(cluster: Cluster) -> None:
    await apply(cluster.a, ipip_state(cluster.a, cluster.b))
    await apply(cluster.b, ipip_state(cluster.b, cluster.a))
    assert_pod_ping_encapsulated(cluster.a, cluster.b)


async def test_reconciling_an_unchanged_kernel_writes_nothing(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    await apply(a, ipip_state(a, b))
    assert (await apply(a, ipip_state(a, b))).changes == 0


async def test_switch_to_direct_and_back_moves_traffic_off_and_onto_the_tunnel(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    await apply(a, direct_state(b))
    await apply(b, direct_state(a))
    assert a.ns.ip("route", "show", "proto", str(RTPROT_TORTIE)).stdout.split() == \
        [b.block, "via", b.address, "dev", "eth0"]
    # tunl0 is the ipip module's fallback device: it stays, but down and without an address.
    assert a.ns.ip("-br", "link", "show", "tunl0").stdout.split()[1] == "DOWN"
    assert a.ns.ip("-4", "addr", "show", "dev", "tunl0").stdout.strip() == ""
    capture = Capture(b.ns, "eth0", count=2, bpf="icmp or ip proto 4")
    assert_all_received(ping(a.pod, b.pod_ip, count=1), 1)
    lines = capture.lines()
    assert lines and not any(encapsulated(line) for line in lines), "\n".join(lines)

    await apply(a, ipip_state(a, b))
    await apply(b, ipip_state(b, a))
    assert_pod_ping_encapsulated(a, b, count=1)
