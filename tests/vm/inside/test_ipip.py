"""IP-in-IP between two nodes on a kernel that has it, in the Calico routing article's route shape.

Each node routes the other's block `via <peer node IP> dev tunl0 onlink proto 80`, installed with
pyroute2 (felixd's own programming of the same is `test_felixd_ipip.py`). The proof that traffic
really is encapsulated is a capture on the underlay: the pods' ICMP appears there only inside IP
protocol 4 packets between the node addresses, never bare.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from felixd.state import RTPROT_TORTIE
from lab.netns import NetnsSet
from tests.vm.inside.ipip_support import (
    PREFIX,
    Capture,
    Cluster,
    Node,
    assert_pod_ping_encapsulated,
    load_ipip,
    ping,
    two_nodes,
)

RTNH_F_ONLINK = 4


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    load_ipip()
    with two_nodes() as c:
        yield c


def _route_blocks(local: Node, remote: Node) -> None:
    """tunl0 up with this node's tunnel address, and the remote block the article's way."""
    with IPRoute(netns=local.ns.name, flags=0) as ipr:
        tunl = ipr.link_lookup(ifname="tunl0")[0]
        ipr.link("set", index=tunl, state="up", mtu=1480)
        ipr.addr("replace", index=tunl, address=local.tunnel, prefixlen=32)
        ipr.route("replace", dst=remote.block, gateway=remote.address, oif=tunl, flags=RTNH_F_ONLINK,
                  proto=RTPROT_TORTIE)


def test_modprobe_ipip_gives_every_namespace_a_tunl0() -> None:
    load_ipip()
    with NetnsSet(prefix=PREFIX) as nss:
        link = nss.add("x").ip("-d", "link", "show", "tunl0").stdout
    assert "ipip" in link, link


def test_without_the_block_routes_pods_cannot_reach_each_other(cluster: Cluster) -> None:
    for node in (cluster.a, cluster.b):
        node.ns.ip("route", "flush", "proto", str(RTPROT_TORTIE))
    assert ping(cluster.a.pod, cluster.b.pod_ip, count=1).returncode != 0


def test_routes_have_the_articles_shape(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    _route_blocks(a, b)
    _route_blocks(b, a)
    shown = a.ns.ip("route", "show", "proto", str(RTPROT_TORTIE)).stdout.split()
    assert shown == [b.block, "via", b.address, "dev", "tunl0", "onlink"], shown
    addr = a.ns.ip("-4", "-br", "addr", "show", "tunl0").stdout.split()
    assert f"{a.tunnel}/32" in addr, addr


def test_pod_to_pod_ping_travels_ip_in_ip(cluster: Cluster) -> None:
    _route_blocks(cluster.a, cluster.b)
    _route_blocks(cluster.b, cluster.a)
    assert_pod_ping_encapsulated(cluster.a, cluster.b)


def test_node_to_remote_pod_uses_the_tunnel_address(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    _route_blocks(a, b)
    _route_blocks(b, a)
    capture = Capture(b.ns, "eth0", count=1, bpf="ip proto 4")
    assert ping(a.ns, b.pod_ip, count=1).returncode == 0
    lines = capture.lines()
    assert f"IP {a.address} > {b.address}: IP {a.tunnel} > {b.pod_ip}: ICMP echo request" in lines[0], lines
