"""Who this node peers with, and what it originates, derived from the cluster model as Calico does.

Pure: a ClusterModel and a node name in, `Topology` out. A config reload computes a new Topology
and the speaker applies the difference (peers whose `PeerConfig` did not change keep their session).

Calico semantics kept (confd v3.32, `pkg/backends/calico/client.go` updatePeersV1 and
`bgp_processor.go`; the BIRD template `bird.cfg.template`):

- The node-to-node mesh joins every Node except this one and except route reflectors (Nodes with
  `routeReflectorClusterID`), when `nodeToNodeMeshEnabled` and this node is not a reflector. Mesh
  peerings are one-way: the side whose address is lower *as text* (Go's string comparison, so
  "10.0.0.10" < "10.0.0.9") is passive and the other connects (BIRD `passive on` when the other
  node's address is greater).
- BGPPeers: the global ones (no `node`/`nodeSelector`) are considered before the node-specific ones;
  the first peering to an address wins, and explicit peerings win over the mesh. A `peerIP` peering
  to another Node's address made by a global BGPPeer is passive by the same text rule; node-specific
  and `peerSelector` peerings connect from both sides (collision detection keeps one).
- Reverse peerings: a Node selected by a BGPPeer's `peerSelector`, or owning its `peerIP` (same AS,
  same port), peers back with the Nodes that BGPPeer applies to, unless `reversePeering: Manual`.
- `localASNumber` and `numAllowedLocalASNumbers` apply to `peerIP` peerings only (Calico does not pass
  them to `peerSelector` peerings); everything else applies to both.
- A route reflector's iBGP peers are its clients unless they are reflectors of the same cluster ID.
- Ports: a `peerIP` without a port that is a Node's address (and AS) uses that Node's listen port, as
  do mesh and `peerSelector` peerings; a `node.<name>` BGPConfiguration's `listenPort` wins.
"""

from __future__ import annotations

import ipaddress
from dataclasses import field, replace
from pathlib import Path

from bgpd.advertise import ClusterRoutes, cluster_routes
from proto import tortie_annotations
from proto.record import record
from proto.resources import DEFAULT_SECRETS_DIR, BGPFilter, BGPPeer, ClusterModel, Node, Password
from proto.tortie_annotations import BfdSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MESH, GLOBAL, NODE_SPECIFIC, RR_CLIENT = (
    "node-to-node mesh",
    "global",
    "node specific",
    "route reflector client",
)
DEFAULT_RESTART_TIME = 120.0  # seconds, Calico's BIRD `graceful restart time`
DEFAULT_HOLD_TIME = 90  # seconds; keepalive a third of it unless keepaliveTime says otherwise


@record(frozen=True)
class PeerConfig:
    address: IPAddress
    asn: int
    local_asn: int  # the AS this session uses: BGPPeer localASNumber, else the node's
    peer_type: str  # MESH, GLOBAL, NODE_SPECIFIC, RR_CLIENT (the PEER TYPE column of node status)
    port: int = 179
    node: str | None = None  # the remote Node's name when the peer is a cluster Node
    password: str | None = None
    passive: bool = False
    rr_client: bool = False
    keep_original_next_hop: bool = False
    restart_time: float = DEFAULT_RESTART_TIME
    hold_time: int = DEFAULT_HOLD_TIME
    keepalive_time: float | None = None  # seconds; None: a third of the negotiated hold time
    ttl_security: int | None = None  # GTSM hops; None: off
    allow_local_as: int = 0  # numAllowedLocalASNumbers: how often our AS may appear in a received path
    source_address: IPAddress | None = None
    max_prefixes: int | None = None
    next_hop_mode: str | None = None  # Auto, Self, Keep
    filters: tuple[BGPFilter, ...] = field(default=())  # the BGPFilters its BGPPeer names, in order
    # the gateway of felixd's static route to this peer: bgpd does nothing with it, so a change of it
    # alone is no change of the peering (BIRD's BGP protocol is untouched when its static route changes)
    reachable_by: IPAddress | None = field(default=None, compare=False)
    bfd: BfdSettings | None = None  # BFD on this peering (bfd.tortie.io/* annotations)
    source: str = ""  # which resource made this peering (for logs and `bgp neighbors`)

    @property
    def ebgp(self) -> bool:
        return self.asn != self.local_asn

    @property
    def key(self) -> str:
        return str(self.address)


@record(frozen=True)
class Topology:
    node: str
    asn: int
    router_id: ipaddress.IPv4Address
    listen_port: int
    cluster_id: ipaddress.IPv4Address | None
    addresses: tuple[IPAddress, ...]
    peers: dict[str, PeerConfig]
    originate: tuple[IPNetwork, ...]  # this node's blocks to advertise, and its service ranges
    bind_mode: str | None = None  # BGPConfiguration bindMode; None and NodeIP bind the node's addresses
    routes: ClusterRoutes = field(default_factory=ClusterRoutes)  # prefix advertisements, services, export

    @property
    def is_route_reflector(self) -> bool:
        return self.cluster_id is not None

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        """Where to listen: the node's addresses (bindMode NodeIP, and tortie's default), or every
        address (bindMode None)."""
        if self.bind_mode == "None":
            return ("0.0.0.0", "::") if any(a.version == 6 for a in self.addresses) else ("0.0.0.0",)
        return tuple(str(a) for a in self.addresses)


class TopologyError(ValueError):
    pass


def _read_password(password: Password | None, secrets_dir: Path) -> str | None:
    if password is None:
        return None
    try:
        return password.read(secrets_dir)
    except OSError as exc:
        where = password.path(secrets_dir)
        raise TopologyError(f"cannot read BGP password from {where}: {exc.strerror or exc}") from exc


def _node_addresses(node: Node) -> list[IPAddress]:
    return [i.ip for i in (node.ipv4_address, node.ipv6_address) if i is not None]


def _seconds(value: float | None) -> float | None:
    # confd passes whole seconds to BIRD (math.Round)
    return None if value is None else float(round(value))


def build(model: ClusterModel, node_name: str, secrets_dir: Path = DEFAULT_SECRETS_DIR, *,
          passwords: bool = True) -> Topology:
    """This node's peerings and routes. `passwords=False` leaves every password out (None) without
    reading a secret: felixd needs the peerings (their `reachableBy` routes), never their keys."""
    me = model.node(node_name)
    if me.ipv4_address is None:
        raise TopologyError(f"Node {node_name} has no spec.bgp.ipv4Address: it is the BGP router id")
    cfg = model.bgp_config_for(me)
    my_asn = model.as_number_of(me)
    mine = _node_addresses(me)
    peers: dict[str, PeerConfig] = {}

    def my_address(version: int) -> IPAddress | None:
        return next((a for a in mine if a.version == version), None)

    def rr_client_of(asn: int, local_asn: int, other: Node | None) -> bool:
        # bgp_processor.go: an iBGP peer of a reflector is its client unless it is a reflector of the same
        # cluster; a peerIP peering carries no cluster ID, so every iBGP peerIP peer of a reflector is one
        if not me.is_route_reflector or asn != local_asn:
            return False
        return other is None or other.route_reflector_cluster_id != me.route_reflector_cluster_id

    def options(bp: BGPPeer) -> dict[str, object]:
        """What setPeerConfigFieldsFromV3Resource and the TTL/filter/next-hop fields give every peering."""
        return {
            "password": _read_password(bp.password, secrets_dir) if passwords else None,
            "restart_time": _seconds(bp.max_restart_time) or DEFAULT_RESTART_TIME,
            "keepalive_time": _seconds(bp.keepalive_time),
            "ttl_security": bp.ttl_security or None,
            "keep_original_next_hop": bp.keep_original_next_hop,
            "next_hop_mode": bp.next_hop_mode,
            "reachable_by": bp.reachable_by,
            "filters": tuple(f for name in bp.filters for f in model.filters if f.name == name),
            "max_prefixes": bp.max_prefixes,
        }

    def add(cfg_peer: PeerConfig) -> None:
        if cfg_peer.address in mine:
            return  # never peer with ourselves
        peers.setdefault(cfg_peer.key, cfg_peer)

    def node_peerings(other: Node, bp: BGPPeer, peer_type: str, families: tuple[int, ...]) -> None:
        """Peerings to another Node's addresses (peerSelector and reverse peerings)."""
        for addr in _node_addresses(other):
            local = my_address(addr.version)
            if addr.version not in families or local is None:
                continue
            asn = model.as_number_of(other)
            rr = rr_client_of(asn, my_asn, other)
            add(PeerConfig(
                address=addr, asn=asn, local_asn=my_asn, peer_type=RR_CLIENT if rr else peer_type,
                port=model.listen_port_of(other), node=other.name, rr_client=rr,
                source_address=local if bp.source_address == "UseNodeIP" else None,
                source=f"BGPPeer {bp.name}", **options(bp),  # type: ignore[arg-type]
            ))

    def node_owning(address: IPAddress, asn: int | None, port: int | None) -> Node | None:
        """The Node a peerIP is (nodesWithIPPortAndAS: same address, same AS, same port if given)."""
        for n in model.nodes:
            if address in _node_addresses(n) and (asn is None or model.as_number_of(n) == asn) and (
                    port is None or model.listen_port_of(n) == port):
                return n
        return None

    # Explicit BGPPeers first (global ones, then node-specific), then reverse peerings, then the mesh.
    mine_bgp_peers = model.peers_for(me)
    for bp in sorted(mine_bgp_peers, key=lambda b: not b.global_peer):
        peer_type = GLOBAL if bp.global_peer else NODE_SPECIFIC
        if bp.peer_selector is not None:
            for other in model.nodes:
                if other.name != me.name and bp.selects_peer(other):
                    node_peerings(other, bp, peer_type, (4, 6))
            continue
        if bp.peer_ip is None or bp.as_number is None:
            continue  # localWorkloadSelector peerings: refused until implemented
        remote = node_owning(bp.peer_ip, bp.as_number, bp.peer_port)
        local = my_address(bp.peer_ip.version)
        local_asn = bp.local_as_number or my_asn
        rr = rr_client_of(bp.as_number, local_asn, None)
        calico_node = any(bp.peer_ip in _node_addresses(n) for n in model.nodes)
        add(PeerConfig(
            address=bp.peer_ip, asn=bp.as_number, local_asn=local_asn,
            peer_type=RR_CLIENT if rr else peer_type,
            port=bp.peer_port or (model.listen_port_of(remote) if remote is not None else 179),
            node=remote.name if remote is not None else None, rr_client=rr,
            passive=bp.global_peer and calico_node and local is not None and str(bp.peer_ip) > str(local),
            allow_local_as=max(bp.num_allowed_local_as_numbers or 0, 0),
            source_address=local if bp.source_address == "UseNodeIP" else None,
            source=f"BGPPeer {bp.name}", **options(bp),  # type: ignore[arg-type]
        ))

    # Reverse peerings: this node is the remote end of a BGPPeer applied elsewhere.
    for bp in model.peers:
        if bp.reverse_peering == "Manual" or bp.local_workload_selector is not None:
            continue
        if bp.peer_selector is not None:
            if not bp.selects_peer(me):
                continue
            families: tuple[int, ...] = (4, 6)
        elif bp.peer_ip is not None and bp.as_number is not None:
            if node_owning(bp.peer_ip, bp.as_number, bp.peer_port) is not me:
                continue
            families = (bp.peer_ip.version,)
        else:
            continue
        for other in model.nodes:
            if other.name != me.name and bp.applies_to(other):
                node_peerings(other, bp, NODE_SPECIFIC, families)

    if model.bgp_config.node_to_node_mesh_enabled and not me.is_route_reflector:
        mesh = model.bgp_config
        password = _read_password(mesh.node_mesh_password, secrets_dir) if passwords else None
        restart = _seconds(mesh.node_mesh_max_restart_time) or DEFAULT_RESTART_TIME
        for other in model.nodes:
            if other.name == me.name or other.is_route_reflector:
                continue
            for addr in _node_addresses(other):
                local = my_address(addr.version)
                if local is None:
                    continue
                add(PeerConfig(
                    address=addr, asn=model.as_number_of(other), local_asn=my_asn, peer_type=MESH,
                    port=model.listen_port_of(other), node=other.name, password=password,
                    passive=str(addr) > str(local), restart_time=restart, source_address=local,
                    source="node-to-node mesh",
                ))

    subnets = [i.network for i in (me.ipv4_address, me.ipv6_address) if i is not None]
    peers = {key: _with_bfd(p, model, subnets) for key, p in peers.items()}
    originate = []
    for block in model.blocks_for(me):
        pool = model.pool_for(block.cidr)
        # Blocks of disabled pools stay exported, as in Calico: `disabled` stops new allocations only,
        # and the workloads already in those blocks still need their routes. allowedUses Workload and
        # Tunnel both need the block's route; LoadBalancer pools are refused until implemented.
        if pool is not None and not pool.disable_bgp_export:
            originate.append(block.cidr)
    routes = cluster_routes(model, me)
    originate += [n for n in routes.services if n not in originate]
    return Topology(
        node=me.name,
        asn=my_asn,
        router_id=me.ipv4_address.ip,
        listen_port=cfg.listen_port,
        cluster_id=me.route_reflector_cluster_id,
        addresses=tuple(mine),
        peers=peers,
        originate=tuple(sorted(originate, key=lambda n: (n.version, int(n.network_address)))),
        bind_mode=model.bgp_config.bind_mode,
        routes=routes,
    )


def _with_bfd(peer: PeerConfig, model: ClusterModel, subnets: list[IPNetwork]) -> PeerConfig:
    """BFD from the annotations of what made the peering: its BGPPeer, or for the node-to-node mesh
    the default BGPConfiguration. A peer outside this node's subnets is reached through a router:
    its BFD runs multihop (RFC 5883)."""
    if peer.source == "node-to-node mesh":
        annotations = model.bgp_config.annotations
    else:
        bp = next((b for b in model.peers if f"BGPPeer {b.name}" == peer.source), None)
        annotations = bp.annotations if bp is not None else {}
    settings = tortie_annotations.bfd_settings(annotations)
    if settings is None:
        return peer
    if settings.auth_type is not None and settings.auth_key_file is not None:
        try:
            text = Path(settings.auth_key_file).read_bytes()
        except OSError as exc:
            raise TopologyError(f"cannot read the BFD key of {peer.source} from {settings.auth_key_file}: "
                                f"{exc.strerror or exc}") from exc
        key = text[:-1] if text.endswith(b"\n") else text
        limit = 16 if settings.auth_type in (1, 2, 3) else 20
        if not 1 <= len(key) <= limit:
            raise TopologyError(f"the BFD key of {peer.source} in {settings.auth_key_file} has {len(key)} "
                                f"octets: 1 to {limit} for this authentication type")
        settings = replace(settings, auth_key=key)
    multihop = not any(peer.address in net for net in subnets if net.version == peer.address.version)
    return replace(peer, bfd=replace(settings, multihop=multihop))


@record(frozen=True)
class TopologyDiff:
    added: tuple[PeerConfig, ...]
    removed: tuple[PeerConfig, ...]
    changed: tuple[tuple[PeerConfig, PeerConfig], ...]  # (old, new): the session restarts
    originate_changed: bool
    identity_changed: bool  # AS, router id, cluster id, port or listen addresses: every session restarts
    routes_changed: bool = False  # prefix advertisements, service ranges or export ranges
    # (old, new) peers whose BFD settings alone changed: BFD follows without restarting BGP
    bfd_changed: tuple[tuple[PeerConfig, PeerConfig], ...] = ()


def diff(old: Topology, new: Topology) -> TopologyDiff:
    identity = (old.asn, old.router_id, old.cluster_id, old.listen_port, old.listen_addresses) != (
        new.asn,
        new.router_id,
        new.cluster_id,
        new.listen_port,
        new.listen_addresses,
    )
    both = [(old.peers[k], p) for k, p in new.peers.items() if k in old.peers and old.peers[k] != p]
    bfd_only = [(a, b) for a, b in both if replace(a, bfd=None) == replace(b, bfd=None)]
    return TopologyDiff(
        added=tuple(p for k, p in new.peers.items() if k not in old.peers),
        removed=tuple(p for k, p in old.peers.items() if k not in new.peers),
        changed=tuple(pair for pair in both if pair not in bfd_only),
        originate_changed=old.originate != new.originate,
        identity_changed=identity,
        routes_changed=old.routes != new.routes,
        bfd_changed=tuple(bfd_only),
    )
