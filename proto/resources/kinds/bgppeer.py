"""BGPPeer: a peering this cluster's nodes make, to an address or to the Nodes a selector picks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from proto.resources import fields as f
from proto.resources.kinds.base import Resource
from proto.resources.kinds.node import Node
from proto.resources.values import IPAddress, Password, format_duration, parse_as_number
from proto.selector import Selector


@dataclass(frozen=True, kw_only=True)
class BGPPeer(Resource):
    kind: ClassVar[str] = "BGPPeer"
    aliases: ClassVar[tuple[str, ...]] = ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps")

    node: str | None = None
    peer_ip: IPAddress | None = None
    peer_port: int | None = None  # None: 179, or the remote Node's listenPort
    as_number: int | None = None
    node_selector: Selector | None = None
    peer_selector: Selector | None = None
    password: Password | None = None
    keep_original_next_hop: bool = False
    max_restart_time: float | None = None  # seconds
    keepalive_time: float | None = None  # seconds
    ttl_security: int | None = None  # hops (GTSM)
    source_address: str = "UseNodeIP"
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

    @classmethod
    def _read(cls, spec: f.FieldReader) -> dict[str, Any]:
        peer = spec.get("peerIP", f.peer_ip)
        out = {
            "node": spec.get("node", f.name),
            "peer_ip": peer[0] if isinstance(peer, tuple) else peer,
            "peer_port": peer[1] if isinstance(peer, tuple) else None,
            "as_number": spec.get("asNumber", parse_as_number),
            "node_selector": spec.get("nodeSelector", f.selector),
            "peer_selector": spec.get("peerSelector", f.selector),
            "password": spec.get("password", f.password),
            "keep_original_next_hop": spec.get("keepOriginalNextHop", f.boolean, False),
            "max_restart_time": spec.get("maxRestartTime", f.duration),
            "keepalive_time": spec.get("keepaliveTime", f.duration),
            "ttl_security": spec.get("ttlSecurity", f.integer(0, 255)),
            "source_address": spec.get("sourceAddress", f.one_of("UseNodeIP", "None"), "UseNodeIP"),
            "max_prefixes": spec.get("maxPrefixes", f.integer(1, 2**32 - 1)),
        }
        if spec.errors:
            return out
        if out["node"] is not None and out["node_selector"] is not None:
            spec.error("nodeSelector", "cannot be set together with node")
        if out["peer_selector"] is not None:
            for key, attr in (("peerIP", "peer_ip"), ("asNumber", "as_number")):
                if out[attr] is not None:
                    spec.error(key, "must be empty when peerSelector is set")
        else:
            if out["peer_ip"] is None:
                spec.error("peerIP", "is required (or peerSelector)")
            if out["as_number"] is None:
                spec.error("asNumber", "is required with peerIP")
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
        if self.as_number is not None:
            spec["asNumber"] = self.as_number
        if self.node_selector is not None:
            spec["nodeSelector"] = self.node_selector.source
        if self.peer_selector is not None:
            spec["peerSelector"] = self.peer_selector.source
        if self.password is not None:
            spec["password"] = {"file": str(self.password.file)}
        if self.keep_original_next_hop:
            spec["keepOriginalNextHop"] = True
        if self.max_restart_time is not None:
            spec["maxRestartTime"] = format_duration(self.max_restart_time)
        if self.keepalive_time is not None:
            spec["keepaliveTime"] = format_duration(self.keepalive_time)
        if self.ttl_security is not None:
            spec["ttlSecurity"] = self.ttl_security
        if self.source_address != "UseNodeIP":
            spec["sourceAddress"] = self.source_address
        if self.max_prefixes is not None:
            spec["maxPrefixes"] = self.max_prefixes
        return spec


