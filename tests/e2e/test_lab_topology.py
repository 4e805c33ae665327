"""The lab's namespaces behave like the article's network, before any tortie daemon runs."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.topology import LabTopology, seed_scenario
from tests.conftest import require_root, require_tools


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabTopology]:
    require_root()
    require_tools("ip", "nft", "ping")
    t = LabTopology(seed_scenario(), prefix=f"tl{secrets.token_hex(2)}-",
                 state_dir=Path(tmp_path_factory.mktemp("lab")))
    try:
        t.up()
        yield t
    finally:
        t.down()


def ping(t: LabTopology, src: str, dst: str) -> bool:
    return t.ns(src).exec("ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def test_hosts_reach_each_other_within_and_across_subnets(topo: LabTopology) -> None:
    assert ping(topo, "worker-1", "10.30.0.56")
    assert ping(topo, "worker-1", "10.30.1.66")
    assert ping(topo, "worker-3", "10.30.0.10")
    assert ping(topo, "worker-1", "203.0.113.10")


def test_namespaces_have_no_link_to_the_root_namespace(topo: LabTopology) -> None:
    from lab.netns import run

    # A veth whose peer sits in a named namespace shows `link-netns NAME` on the root side.
    root_links = run(["ip", "-o", "-d", "link", "show"]).stdout
    for name in topo.state.namespaces.values():
        assert f"link-netns {name}" not in root_links
    # and inside the lab, every veth's peer is in another lab namespace
    lab = set(topo.state.namespaces.values())
    for name in lab:
        out = run(["ip", "-n", name, "-o", "link", "show", "type", "veth"]).stdout
        peers = set(re.findall(r"link-netns (\S+)", out))
        assert peers <= lab, f"{name} has a veth into {peers - lab}"


def test_gateway_drops_packets_for_pods_and_srcdst_check_switches(topo: LabTopology) -> None:
    w1, w2 = topo.ns("worker-1"), topo.ns("worker-2")
    pod1, pod2 = topo.scenario.pods[0], topo.scenario.pods[1]
    # Hand-made direct routes, as ipipMode Never would program them.
    for host, pod in ((w1, pod1), (w2, pod2)):
        host.ip("route", "replace", f"{pod.ip}/32", "dev", pod.host_iface, "scope", "link")
        host.exec("sysctl", "-qw", f"net.ipv4.conf.{pod.host_iface}.proxy_arp=1")
    w1.ip("route", "replace", "192.168.133.192/26", "via", "10.30.0.56", "dev", "eth0")
    w2.ip("route", "replace", "192.168.226.64/26", "via", "10.30.0.206", "dev", "eth0")
    try:
        topo.set_srcdst(True)
        assert not ping(topo, "pod-1", pod2.ip), "src/dst check must drop pod-addressed frames"
        topo.set_srcdst(False)
        assert ping(topo, "pod-1", pod2.ip)
        # Sent to the gateway, which knows only host subnets: dropped there.
        w1.ip("route", "replace", "192.168.97.192/26", "via", "10.30.0.1", "dev", "eth0")
        assert not ping(topo, "pod-1", topo.scenario.pods[2].ip)
    finally:
        topo.set_srcdst(True)
        w1.ip("route", "del", "192.168.133.192/26", check=False)
        w1.ip("route", "del", "192.168.97.192/26", check=False)
        w2.ip("route", "del", "192.168.226.64/26", check=False)


def test_down_removes_every_namespace(tmp_path: Path) -> None:
    require_root()
    t = LabTopology(seed_scenario(), prefix=f"tl{secrets.token_hex(2)}-", state_dir=tmp_path)
    t.up()
    names = set(t.state.namespaces.values())
    t.down()
    from lab.netns import run

    listed = run(["ip", "netns", "list"]).stdout
    assert not [n for n in names if n in listed.split()]


def test_ipv6_hosts_and_pods_and_the_check_covers_ipv6(topo: LabTopology) -> None:
    """Dual stack: hosts reach each other over IPv6 across the gateway; pods reach their host's
    Calico-style gateway (fe80::ecee:eeff:feee:eeee); direct pod traffic over IPv6 on subnet 1 is
    dropped by the cloud check like IPv4's, and passes without it."""
    w1, w2 = topo.ns("worker-1"), topo.ns("worker-2")
    assert ping(topo, "worker-1", "fd00:10:30::56")
    assert ping(topo, "worker-1", "fd00:10:30:1::66")
    pod1, pod2 = topo.scenario.pod("pod-1"), topo.scenario.pod("pod-2")
    assert pod1.ip6 == "fd00:192:168:226::1" and pod2.ip6 == "fd00:192:168:133::2"
    for host, pod in ((w1, pod1), (w2, pod2)):
        host.ip("-6", "route", "replace", f"{pod.ip6}/128", "dev", pod.host_iface)
    assert ping(topo, "worker-1", pod1.ip6), "the pod must answer its host over its veth"
    w1.ip("-6", "route", "replace", "fd00:192:168:133::/122", "via", "fd00:10:30::56", "dev", "eth0")
    w2.ip("-6", "route", "replace", "fd00:192:168:226::/122", "via", "fd00:10:30::206", "dev", "eth0")
    try:
        topo.set_srcdst(True)
        assert not ping(topo, "pod-1", pod2.ip6), "src/dst check must drop pod-addressed IPv6 frames"
        topo.set_srcdst(False)
        assert ping(topo, "pod-1", pod2.ip6)
    finally:
        topo.set_srcdst(True)
        w1.ip("-6", "route", "del", "fd00:192:168:133::/122", check=False)
        w2.ip("-6", "route", "del", "fd00:192:168:226::/122", check=False)
