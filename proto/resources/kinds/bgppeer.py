"""BGPPeer: a peering this cluster's nodes make, to an address or to the Nodes a selector picks.

Rules from Calico v3.32: api `pkg/apis/projectcalico/v3/bgppeer.go` (fields, enums, CRD rules),
libcalico-go `lib/validator/v3/validator.go` (validateBGPPeerSpec, validateReachableBy, IP:port) and
`lib/clientv3/bgppeer.go` (the BGPFilters named in `filters` must exist; checked by the model).
"""

from __future__ import annotations

from typing import Any, ClassVar

from proto.record import record
from proto.resources import fields as f
from proto.resources.kinds.base import Resource
from proto.resources.kinds.node import Node
from proto.resources.values import IPAddress, Password, format_duration, parse_as_number
from proto.selector import Selector

SELECTOR_MAX = 4096  # the CRD's maxLength for nodeSelector, peerSelector and localWorkloadSelector
MAX_RESTART_TIME = 4095  # seconds: the graceful restart time is 12 bits on the wire (RFC 4724)


@record(frozen=True, kw_only=True)
class BGPPeer(Resource):
    kind: ClassVar[str] = "BGPPeer"
    aliases: ClassVar[tuple[str, ...]] = ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps")

    node: str | None = None
    peer_ip: IPAddress | None = None
    peer_port: int | None = None  # None: 179, or the remote Node's listenPort
    as_number: int | None = None
    local_as_number: int | None = None  # None: the node's own AS number
    node_selector: Selector | None = None
    peer_selector: Selector | None = None
    password: Password | None = None
    keep_original_next_hop: bool = False
    next_hop_mode: str | None = None  # Auto, Self, Keep
    max_restart_time: float | None = None  # seconds
    keepalive_time: float | None = None  # seconds
    num_allowed_local_as_numbers: int | None = None
    ttl_security: int | None = None  # hops (GTSM); 0 is off
    source_address: str = "UseNodeIP"
    reverse_peering: str | None = None  # Auto (default) or Manual
    filters: tuple[str, ...] = ()
    # Calico's static route `peerIP/32 via reachableBy` (felixd writes it; bgpd never touches the kernel)
    reachable_by: IPAddress | None = None
    local_workload_selector: Selector | None = None  # refused until implemented (proto/resources/pending.py)
    max_prefixes: int | None = None  # tortie's extension: tear the session down above this many

    def applies_to(self, node: Node) -> bool:
        """Whether `node` runs this peering (Calico: `node`, else `nodeSelector`, else every node)."""
        if self.node is not None:
            return self.node == node.name
        if self.node_selector is not None:
            return self.node_selector.matches(node.labels)
        return True

    def selects_peer(self, node: Node) -> bool:
        """Whether `node` is a remote end of this peering (only for `peerSelector` peers)."""
        return self.peer_selector is not None and self.peer_selector.matches(node.labels)

    @property
    def global_peer(self) -> bool:
        return self.node is None and self.node_selector is None

    @classmethod
    def read_spec(cls, spec: f.FieldReader, name: str = "") -> dict[str, Any]:
        peer = spec.get("peerIP", _peer_ip)
        sel = f.selector
        out = {
            "node": spec.get("node", f.name),
            "peer_ip": peer[0] if isinstance(peer, tuple) else peer,
            "peer_port": peer[1] if isinstance(peer, tuple) else None,
            "as_number": spec.get("asNumber", parse_as_number),
            "local_as_number": spec.get("localASNumber", parse_as_number),
            "node_selector": spec.get("nodeSelector", _max_selector(sel)),
            "peer_selector": spec.get("peerSelector", _max_selector(sel)),
            "password": spec.get("password", f.password),
            "keep_original_next_hop": spec.get("keepOriginalNextHop", f.boolean, False),
            "next_hop_mode": spec.get("nextHopMode", f.one_of("Auto", "Self", "Keep")),
            "max_restart_time": spec.get("maxRestartTime", f.duration(0, MAX_RESTART_TIME)),
            "keepalive_time": spec.get("keepaliveTime", f.duration(1, 65535)),
            "num_allowed_local_as_numbers": spec.get("numAllowedLocalASNumbers", f.integer(-2**31, 2**31 - 1)),
            "ttl_security": spec.get("ttlSecurity", f.integer(0, 255)),
            "source_address": spec.get("sourceAddress", f.one_of("UseNodeIP", "None"), "UseNodeIP"),
            "reverse_peering": spec.get("reversePeering", f.one_of("Auto", "Manual")),
            "filters": spec.get("filters", f.string_list(f.name), ()),
            "reachable_by": spec.get("reachableBy", _reachable_by),
            "local_workload_selector": spec.get("localWorkloadSelector", _max_selector(sel)),
            "max_prefixes": spec.get("maxPrefixes", f.integer(1, 2**32 - 1)),
        }
        if spec.errors:
            return out
        # the CRD's x-kubernetes-validations and validateBGPPeerSpec, in their words
        if out["node"] is not None and out["node_selector"] is not None:
            spec.error("nodeSelector", "node and nodeSelector cannot both be set")
        if out["peer_selector"] is not None and out["peer_ip"] is not None:
            spec.error("peerIP", "peerIP and peerSelector cannot both be set")
        if out["peer_selector"] is not None and out["as_number"] is not None:
            spec.error("asNumber", "asNumber must be empty when peerSelector is set")
        if out["local_workload_selector"] is not None:
            if out["peer_ip"] is not None:
                spec.error("peerIP", "peerIP must be empty when localWorkloadSelector is set")
            if out["peer_selector"] is not None:
                spec.error("peerSelector", "peerSelector must be empty when localWorkloadSelector is set")
            if out["as_number"] is None:
                spec.error("asNumber", "asNumber is required when localWorkloadSelector is set")
        elif out["peer_selector"] is None:
            # Calico accepts a BGPPeer with neither (and then configures nothing usable); tortie asks
            if out["peer_ip"] is None:
                spec.error("peerIP", "is required (or peerSelector)")
            elif out["as_number"] is None:
                spec.error("asNumber", "is required with peerIP (the peer's AS number)")
        if out["reachable_by"] is not None:
            if out["peer_ip"] is None:
                spec.error("reachableBy", "reachableBy must be empty when peerIP is empty")
            elif out["reachable_by"].version != out["peer_ip"].version:
                spec.error("reachableBy", "ReachableBy and PeerIP address family mismatched")
        if out["peer_selector"] is not None:
            for key, attr in (("localASNumber", "local_as_number"),
                              ("numAllowedLocalASNumbers", "num_allowed_local_as_numbers")):
                if out[attr] is not None:
                    spec.warn(key, "has no effect on peerSelector peerings (Calico applies it to peerIP "
                              "peerings only)")
        if out["keep_original_next_hop"] and out["next_hop_mode"] is not None:
            spec.error("keepOriginalNextHop", "keepOriginalNextHop and nextHopMode cannot both be set; "
                       "keepOriginalNextHop is deprecated, use nextHopMode instead")
        return out

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.node is not None:
            spec["node"] = self.node
        if self.peer_ip is not None:
            ip = str(self.peer_ip)
            if self.peer_port is not None:
                ip = f"[{ip}]:{self.peer_port}" if self.peer_ip.version == 6 else f"{ip}:{self.peer_port}"
            spec["peerIP"] = ip
        for key, value in (("asNumber", self.as_number), ("localASNumber", self.local_as_number),
                           ("numAllowedLocalASNumbers", self.num_allowed_local_as_numbers),
                           ("ttlSecurity", self.ttl_security), ("nextHopMode", self.next_hop_mode),
                           ("reversePeering", self.reverse_peering), ("maxPrefixes", self.max_prefixes)):
            if value is not None:
                spec[key] = value
        for key, sel in (("nodeSelector", self.node_selector), ("peerSelector", self.peer_selector),
                         ("localWorkloadSelector", self.local_workload_selector)):
            if sel is not None:
                spec[key] = sel.source
        if self.password is not None:
            spec["password"] = self.password.to_dict()
        if self.keep_original_next_hop:
            spec["keepOriginalNextHop"] = True
        if self.max_restart_time is not None:
            spec["maxRestartTime"] = format_duration(self.max_restart_time)
        if self.keepalive_time is not None:
            spec["keepaliveTime"] = format_duration(self.keepalive_time)
        if self.source_address != "UseNodeIP":
            spec["sourceAddress"] = self.source_address
        if self.filters:
            spec["filters"] = list(self.filters)
        if self.reachable_by is not None:
            spec["reachableBy"] = str(self.reachable_by)
        return spec


def _peer_ip(value: Any) -> tuple[IPAddress, int | None]:
    if isinstance(value, str) and len(value) > 64:
        raise ValueError("may not be longer than 64 characters")
    return f.peer_ip(value)


def _reachable_by(value: Any) -> IPAddress:
    """An address as Go's net.ParseIP reads it (validateReachableByField): no IPv6 zone (`%eth0`)."""
    addr = f.address(value)
    if getattr(addr, "scope_id", None) is not None:
        raise ValueError(f"{value!r} is not an IP address")
    return addr


def _max_selector(conv: Any) -> Any:
    def read(value: Any) -> Selector:
        if isinstance(value, str) and len(value) > SELECTOR_MAX:
            raise ValueError(f"may not be longer than {SELECTOR_MAX} characters")
        return conv(value)  # type: ignore[no-any-return]
    return read
