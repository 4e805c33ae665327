"""Every file in configs/ loads; the seed cluster holds the article's values."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from proto.resources import ClusterModel, load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# configs/ also holds peer configurations for BIRD, GoBGP and FRR: only cluster resource files are ours.
YAML_FILES = sorted(p for p in CONFIGS.glob("*.yaml") if "apiVersion: projectcalico.org/v3" in p.read_text())


def load(name: str) -> ClusterModel:
    path = CONFIGS / name
    return load_model(path.read_text(), str(path))


def test_configs_exist() -> None:
    names = {p.name for p in YAML_FILES}
    assert {"seed-cluster.yaml", "ippool-direct.yaml", "ippool-crosssubnet.yaml", "ippool-vxlan.yaml",
            "route-reflectors.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_every_config_loads_without_warnings(path: Path) -> None:
    model = load_model(path.read_text(), str(path))
    assert model.resources and model.warnings == ()


def test_seed_cluster() -> None:
    model = load("seed-cluster.yaml")
    assert {n.name: str(n.ipv4_address) for n in model.nodes} == {
        "master": "10.30.0.10/24", "worker-1": "10.30.0.206/24", "worker-2": "10.30.0.56/24",
        "worker-3": "10.30.1.66/24"}
    # dual stack: the IPv6 addresses mirror the IPv4 ones, worker-3 on its own IPv6 subnet too
    assert {n.name: str(n.ipv6_address) for n in model.nodes} == {
        "master": "fd00:10:30::10/64", "worker-1": "fd00:10:30::206/64", "worker-2": "fd00:10:30::56/64",
        "worker-3": "fd00:10:30:1::66/64"}
    cfg = model.bgp_config
    assert cfg.as_number == 64512 and cfg.node_to_node_mesh_enabled
    assert all(model.as_number_of(n) == 64512 and not n.is_route_reflector for n in model.nodes)
    pool, pool6 = model.pools
    assert (pool.name, str(pool.cidr), pool.block_size, pool.ipip_mode, pool.vxlan_mode, pool.nat_outgoing) == (
        "default-ipv4-ippool", "192.168.0.0/16", 26, "Always", "Never", True)
    assert pool.mode == "ipip"
    # Calico has no IP-in-IP on IPv6 pools: VXLAN
    assert (pool6.name, str(pool6.cidr), pool6.block_size, pool6.ipip_mode, pool6.vxlan_mode, pool6.mode) == (
        "default-ipv6-ippool", "fd00:192:168::/48", 122, "Never", "Always", "vxlan")
    blocks: dict[str, list[str]] = {}
    for b in model.blocks:
        blocks.setdefault(b.node, []).append(str(b.cidr))
    assert blocks == {
        "master": ["192.168.219.64/26", "fd00:192:168:219::/122"],
        "worker-1": ["192.168.226.64/26", "fd00:192:168:226::/122"],
        "worker-2": ["192.168.133.192/26", "fd00:192:168:133::/122"],
        "worker-3": ["192.168.97.192/26", "fd00:192:168:97::/122"]}
    pods = {w.name: (w.node, [str(n) for n in w.ip_networks], w.interface_name) for w in model.workloads}
    assert {k: v[:2] for k, v in pods.items()} == {
        "pod-1": ("worker-1", ["192.168.226.65/32", "fd00:192:168:226::1/128"]),
        "pod-2": ("worker-2", ["192.168.133.194/32", "fd00:192:168:133::2/128"]),
        "pod-3": ("worker-3", ["192.168.97.193/32", "fd00:192:168:97::1/128"])}
    for node_name, nets, iface in pods.values():
        assert iface.startswith("cali") and len(iface) <= 15
        node_blocks = [b.cidr for b in model.blocks_for(node_name)]
        assert all(any(n.subnet_of(b) for b in node_blocks if b.version == n.version)  # type: ignore[arg-type]
                   for n in [ipaddress.ip_network(x) for x in nets])


@pytest.mark.parametrize(("name", "ipip", "vxlan", "mode"), [
    ("ippool-direct.yaml", "Never", "Never", None),
    ("ippool-crosssubnet.yaml", "CrossSubnet", "Never", "ipip"),
    ("ippool-vxlan.yaml", "Never", "Always", "vxlan"),
])
def test_article_pools(name: str, ipip: str, vxlan: str, mode: str | None) -> None:
    (pool,) = load(name).pools
    seed_pool = load("seed-cluster.yaml").pools[0]
    assert (pool.name, pool.cidr, pool.block_size) == (seed_pool.name, seed_pool.cidr, seed_pool.block_size)
    assert (pool.ipip_mode, pool.vxlan_mode, pool.mode, pool.nat_outgoing) == (ipip, vxlan, mode, True)
    # each can be applied over the seed cluster (cidr and blockSize unchanged)
    assert load("seed-cluster.yaml").apply([pool]).pool(pool.name) == pool


def test_route_reflector_example() -> None:
    model = load("route-reflectors.yaml")
    assert not model.bgp_config.node_to_node_mesh_enabled
    reflectors = [n.name for n in model.nodes if n.is_route_reflector]
    assert reflectors == ["rr-1", "rr-2"]
    peer = model.get("BGPPeer", "peer-with-route-reflectors")
    for node in model.nodes:  # every node, reflectors included, peers with both reflectors
        assert peer in model.peers_for(node)
        assert [n.name for n in model.nodes if peer.selects_peer(n)] == reflectors  # type: ignore[attr-defined]
    tor = model.get("BGPPeer", "rr-to-tor")
    assert [n.name for n in model.nodes if tor.applies_to(n)] == reflectors  # type: ignore[attr-defined]
    assert tor.max_prefixes == 10000 and str(tor.password.file) == "/etc/tortie/tor-password"  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_every_config_survives_dump_and_load(path: Path) -> None:
    from proto.resources import dump_yaml
    model = load_model(path.read_text(), str(path))
    again = load_model(dump_yaml(model.resources), "dumped")
    assert again.resources == model.resources
    assert dump_yaml(again.resources) == dump_yaml(model.resources)
