"""Node: a host of the cluster, its BGP addresses, AS number, reflector role and tunnel addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from proto.resources import fields as f
from proto.resources.kinds.base import Resource
from proto.resources.values import parse_as_number, vtep_mac_for


@dataclass(frozen=True, kw_only=True)
class Node(Resource):
    kind: ClassVar[str] = "Node"
    aliases: ClassVar[tuple[str, ...]] = ("node", "nodes", "no", "nos")

    ipv4_address: ipaddress.IPv4Interface | None = None
    ipv6_address: ipaddress.IPv6Interface | None = None
    as_number: int | None = None  # None: the cluster's BGPConfiguration asNumber
    route_reflector_cluster_id: ipaddress.IPv4Address | None = None
    ipv4_ipip_tunnel_addr: ipaddress.IPv4Address | None = None
    ipv4_vxlan_tunnel_addr: ipaddress.IPv4Address | None = None
    vxlan_tunnel_mac_addr: str | None = None

    @property
    def is_route_reflector(self) -> bool:
        return self.route_reflector_cluster_id is not None

    @property
    def vtep_mac(self) -> str:
        return self.vxlan_tunnel_mac_addr or vtep_mac_for(self.name)

    @classmethod
    def _read(cls, spec: f.FieldReader) -> dict[str, Any]:
        bgp = spec.sub("bgp")
        out = {
            "ipv4_address": bgp.get("ipv4Address", _node_ipv4(bgp)),
            "ipv6_address": bgp.get("ipv6Address", _node_ipv6),
            "as_number": bgp.get("asNumber", parse_as_number),
            "route_reflector_cluster_id": bgp.get("routeReflectorClusterID", f.ipv4_address),
            "ipv4_ipip_tunnel_addr": bgp.get("ipv4IPIPTunnelAddr", f.ipv4_address),
            "ipv4_vxlan_tunnel_addr": spec.get("ipv4VXLANTunnelAddr", f.ipv4_address),
            "vxlan_tunnel_mac_addr": spec.get("vxlanTunnelMACAddr", f.mac),
        }
        bgp.finish()
        return out

    def spec_dict(self) -> dict[str, Any]:
        bgp: dict[str, Any] = {}
        if self.ipv4_address is not None:
            bgp["ipv4Address"] = str(self.ipv4_address)
        if self.ipv6_address is not None:
            bgp["ipv6Address"] = str(self.ipv6_address)
        if self.as_number is not None:
            bgp["asNumber"] = self.as_number
        if self.route_reflector_cluster_id is not None:
            bgp["routeReflectorClusterID"] = str(self.route_reflector_cluster_id)
        if self.ipv4_ipip_tunnel_addr is not None:
            bgp["ipv4IPIPTunnelAddr"] = str(self.ipv4_ipip_tunnel_addr)
        spec: dict[str, Any] = {"bgp": bgp} if bgp else {}
        if self.ipv4_vxlan_tunnel_addr is not None:
            spec["ipv4VXLANTunnelAddr"] = str(self.ipv4_vxlan_tunnel_addr)
        if self.vxlan_tunnel_mac_addr is not None:
            spec["vxlanTunnelMACAddr"] = self.vxlan_tunnel_mac_addr
        return spec


def _node_ipv4(reader: f.FieldReader) -> Callable[[Any], ipaddress.IPv4Interface]:
    def conv(value: Any) -> ipaddress.IPv4Interface:
        text = f.string(value)
        if "/" not in text:
            raise ValueError(f"{text!r} has no prefix length; write address/prefix (e.g. {text}/24): "
                             "CrossSubnet decides from this subnet which nodes are on-link")
        try:
            iface = ipaddress.IPv4Interface(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 address/prefix like 10.30.0.10/24") from None
        if iface.network.prefixlen == 32:
            reader.warn("ipv4Address", f"{text} is a /32: every other node looks like a different "
                        "subnet, so CrossSubnet pools will encapsulate all traffic; give the real prefix "
                        "length of the host's subnet")
        return iface
    return conv


def _node_ipv6(value: Any) -> ipaddress.IPv6Interface:
    text = f.string(value)
    if "/" not in text:
        raise ValueError(f"{text!r} has no prefix length; write address/prefix (e.g. {text}/64)")
    try:
        return ipaddress.IPv6Interface(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv6 address/prefix") from None


