"""Who this node peers with, and what it originates, derived from the cluster model as Calico does.

Pure: a ClusterModel and a node name in, `Topology` out. A config reload computes a new Topology
and the speaker applies the difference (peers whose `PeerConfig` did not change keep their session).

Calico semantics kept: the node-to-node mesh joins every Node except this one and except route
reflectors (Nodes with `routeReflectorClusterID`), when `nodeToNodeMeshEnabled`; in the mesh (and on
any Node-to-Node peering) the side with the higher address is passive, so only one connection is
made; BGPPeer resources apply to this node by `node`, `nodeSelector` or globally, and reach other
Nodes by `peerSelector`; a reflector's peerings to Nodes that are not reflectors are its clients.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from proto.resources import BGPPeer, ClusterModel, Node

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MESH, GLOBAL, NODE_SPECIFIC, RR_CLIENT = (
    "node-to-node mesh",
    "global",
    "node specific",
    "route reflector client",
)
DEFAULT_RESTART_TIME = 120.0  # seconds, Calico's BIRD `graceful restart time`
DEFAULT_HOLD_TIME = 90  # seconds; BIRD's default: keepalive 30


@dataclass(frozen=True)
class PeerConfig:
    address: IPAddress
    asn: int
    local_asn: int
    peer_type: str  # MESH, GLOBAL, NODE_SPECIFIC, RR_CLIENT (the PEER TYPE column of node status)
    port: int = 179
    node: str | None = None  # the remote Node's name when the peer is a cluster Node
    password: str | None = None
    passive: bool = False
    rr_client: bool = False
    keep_original_next_hop: bool = False
    restart_time: float = DEFAULT_RESTART_TIME
    hold_time: int = DEFAULT_HOLD_TIME
    ttl_security: int | None = None
    source_address: IPAddress | None = None
    max_prefixes: int | None = None
    source: str = ""  # which resource made this peering (for logs and `bgp neighbors`)

    @property
    def ebgp(self) -> bool:
        return self.asn != self.local_asn

    @property
    def key(self) -> str:
        return str(self.address)


@dataclass(frozen=True)
class Topology:
    node: str
    asn: int
    router_id: ipaddress.IPv4Address
    listen_port: int
    cluster_id: ipaddress.IPv4Address | None
    addresses: tuple[IPAddress, ...]
    peers: dict[str, PeerConfig]
    originate: tuple[IPNetwork, ...]  # this node's blocks to advertise

    @property
    def is_route_reflector(self) -> bool:
        return self.cluster_id is not None


class TopologyError(ValueError):
    pass


def _read_password(peer_password: object) -> str | None:
    if peer_password is None:
        return None
    try:
        return peer_password.read()  # type: ignore[attr-defined,no-any-return]
    except OSError as exc:
        raise TopologyError(f"cannot read BGP password: {exc}") from exc


def _node_addresses(node: Node) -> list[IPAddress]:
    return [i.ip for i in (node.ipv4_address, node.ipv6_address) if i is not None]


def build(model: ClusterModel, node_name: str) -> Topology:
    me = model.node(node_name)
    if me.ipv4_address is None:
        raise TopologyError(f"Node {node_name} has no spec.bgp.ipv4Address: it is the BGP router id")
    cfg = model.bgp_config
    my_asn = model.as_number_of(me)
    mine = _node_addresses(me)
    mesh_password = _read_password(cfg.node_mesh_password)
    mesh_restart = cfg.node_mesh_max_restart_time or DEFAULT_RESTART_TIME
    peers: dict[str, PeerConfig] = {}

    def my_address(version: int) -> IPAddress | None:
        return next((a for a in mine if a.version == version), None)

    def node_peers(
        other: Node,
        peer_type: str,
        *,
        password: str | None,
        restart: float,
        from_peer: BGPPeer | None,
        source: str,
    ) -> None:
        for addr in _node_addresses(other):
            local = my_address(addr.version)
            if local is None:
                continue
            rr_client = me.is_route_reflector and not other.is_route_reflector
            cfg_peer = PeerConfig(
                address=addr,
                asn=model.as_number_of(other),
                local_asn=my_asn,
                peer_type=RR_CLIENT if rr_client else peer_type,
                node=other.name,
                password=password,
                passive=int(local) > int(addr),
                rr_client=rr_client,
                restart_time=restart,
                port=cfg.listen_port,
                source_address=local,
                source=source,
                **_peer_options(from_peer),
            )
            peers.setdefault(cfg_peer.key, cfg_peer)

    # Explicit BGPPeers first: a peering someone configured wins over the mesh's default one.
    for bp in model.peers_for(me):
        peer_type = NODE_SPECIFIC if (bp.node is not None or bp.node_selector is not None) else GLOBAL
        password = _read_password(bp.password)
        restart = bp.max_restart_time or DEFAULT_RESTART_TIME
        if bp.peer_selector is not None:
            for other in model.nodes:
                if other.name != me.name and bp.selects_peer(other):
                    node_peers(
                        other,
                        peer_type,
                        password=password,
                        restart=restart,
                        from_peer=bp,
                        source=f"BGPPeer {bp.name}",
                    )
            continue
        assert bp.peer_ip is not None and bp.as_number is not None  # validated by the resource
        if bp.peer_ip in mine:
            continue  # a global peer list naming this node itself
        remote = next((n for n in model.nodes if bp.peer_ip in _node_addresses(n)), None)
        local = my_address(bp.peer_ip.version)
        source_address = local if bp.source_address == "UseNodeIP" else None
        rr_client = (
            me.is_route_reflector
            and remote is not None
            and not remote.is_route_reflector
            and bp.as_number == my_asn
        )
        peers.setdefault(
            str(bp.peer_ip),
            PeerConfig(
                address=bp.peer_ip,
                asn=bp.as_number,
                local_asn=my_asn,
                peer_type=RR_CLIENT if rr_client else peer_type,
                port=bp.peer_port or 179,
                node=remote.name if remote else None,
                password=password,
                passive=remote is not None and local is not None and int(local) > int(bp.peer_ip),
                rr_client=rr_client,
                restart_time=restart,
                source_address=source_address,
                source=f"BGPPeer {bp.name}",
                **_peer_options(bp),
            ),
        )

    # peerSelector peerings are symmetric, as in Calico: a Node selected by a BGPPeer's peerSelector
    # also peers with every Node that BGPPeer applies to (this is how reflectors learn their clients).
    for bp in model.peers:
        if bp.peer_selector is None or not bp.selects_peer(me):
            continue
        peer_type = NODE_SPECIFIC if (bp.node is not None or bp.node_selector is not None) else GLOBAL
        for other in model.nodes:
            if other.name != me.name and bp.applies_to(other):
                node_peers(other, peer_type, password=_read_password(bp.password),
                           restart=bp.max_restart_time or DEFAULT_RESTART_TIME, from_peer=bp,
                           source=f"BGPPeer {bp.name}")

    if cfg.node_to_node_mesh_enabled and not me.is_route_reflector:
        for other in model.nodes:
            if other.name == me.name or other.is_route_reflector:
                continue
            node_peers(
                other,
                MESH,
                password=mesh_password,
                restart=mesh_restart,
                from_peer=None,
                source="node-to-node mesh",
            )

    originate = []
    for block in model.blocks_for(me):
        pool = model.pool_for(block.cidr)
        # Blocks of disabled pools stay exported, as in Calico: `disabled` stops new allocations only,
        # and the workloads already in those blocks still need their routes.
        if pool is not None and not pool.disable_bgp_export:
            originate.append(block.cidr)
    return Topology(
        node=me.name,
        asn=my_asn,
        router_id=me.ipv4_address.ip,
        listen_port=cfg.listen_port,
        cluster_id=me.route_reflector_cluster_id,
        addresses=tuple(mine),
        peers=peers,
        originate=tuple(sorted(originate, key=lambda n: (n.version, int(n.network_address)))),
    )


def _peer_options(bp: BGPPeer | None) -> dict[str, object]:
    if bp is None:
        return {}
    out: dict[str, object] = {
        "keep_original_next_hop": bp.keep_original_next_hop,
        "ttl_security": bp.ttl_security,
        "max_prefixes": bp.max_prefixes,
    }
    if bp.keepalive_time:
        # BIRD and Calico: hold time is three keepalive intervals
        out["hold_time"] = max(3, int(bp.keepalive_time * 3))
    return out


@dataclass(frozen=True)
class TopologyDiff:
    added: tuple[PeerConfig, ...]
    removed: tuple[PeerConfig, ...]
    changed: tuple[tuple[PeerConfig, PeerConfig], ...]  # (old, new): the session restarts
    originate_changed: bool
    identity_changed: bool  # AS, router id, cluster id or port: every session restarts


def diff(old: Topology, new: Topology) -> TopologyDiff:
    identity = (old.asn, old.router_id, old.cluster_id, old.listen_port) != (
        new.asn,
        new.router_id,
        new.cluster_id,
        new.listen_port,
    )
    return TopologyDiff(
        added=tuple(p for k, p in new.peers.items() if k not in old.peers),
        removed=tuple(p for k, p in old.peers.items() if k not in new.peers),
        changed=tuple(
            (old.peers[k], p) for k, p in new.peers.items() if k in old.peers and old.peers[k] != p
        ),
        originate_changed=old.originate != new.originate,
        identity_changed=identity,
    )
