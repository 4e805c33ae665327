"""Node: a host of the cluster, its BGP addresses, AS number, reflector role and tunnel addresses.

Rules from Calico v3.32 libcalico-go `lib/apis/internalapi/node.go` (fields and their `validate` tags)
and `lib/validator/v3/validator.go` (validateNodeSpec, cidrv4/cidrv6: an address with or without a
prefix length, host bits allowed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, ClassVar

from proto.record import record
from proto.resources import fields as f
from proto.resources.kinds.base import Resource
from proto.resources.values import parse_as_number, vtep_mac_for

ADDRESS_TYPES = ("CalicoNodeIP", "InternalIP", "ExternalIP")


@record(frozen=True, kw_only=True)
class Node(Resource):
    kind: ClassVar[str] = "Node"
    aliases: ClassVar[tuple[str, ...]] = ("node", "nodes", "no", "nos")
    KEPT: ClassVar[tuple[str, ...]] = ("orchRefs", "addresses", "interfaces", "wireguard")

    ipv4_address: ipaddress.IPv4Interface | None = None  # without a prefix length: a /32
    ipv6_address: ipaddress.IPv6Interface | None = None
    as_number: int | None = None  # None: the cluster's BGPConfiguration asNumber
    route_reflector_cluster_id: ipaddress.IPv4Address | None = None
    ipv4_ipip_tunnel_addr: ipaddress.IPv4Address | None = None
    ipv4_vxlan_tunnel_addr: ipaddress.IPv4Address | None = None
    vxlan_tunnel_mac_addr: str | None = None
    ipv6_vxlan_tunnel_addr: ipaddress.IPv6Address | None = None
    vxlan_tunnel_mac_addr_v6: str | None = None

    @property
    def is_route_reflector(self) -> bool:
        return self.route_reflector_cluster_id is not None

    @property
    def vtep_mac(self) -> str:
        return self.vxlan_tunnel_mac_addr or vtep_mac_for(self.name)

    @classmethod
    def read_spec(cls, spec: f.FieldReader, name: str = "") -> dict[str, Any]:
        bgp_given = isinstance(spec.data.get("bgp"), dict)
        bgp = spec.sub("bgp")
        if bgp_given and not bgp.data:
            spec.error("bgp", "Spec.BGP should not be empty")
        out = {
            "ipv4_address": bgp.get("ipv4Address", _node_address(bgp, "ipv4Address", 4)),
            "ipv6_address": bgp.get("ipv6Address", _node_address(bgp, "ipv6Address", 6)),
            "as_number": bgp.get("asNumber", parse_as_number),
            "route_reflector_cluster_id": bgp.get("routeReflectorClusterID", f.ipv4_address),
            "ipv4_ipip_tunnel_addr": bgp.get("ipv4IPIPTunnelAddr", f.ipv4_address),
            "ipv4_vxlan_tunnel_addr": spec.get("ipv4VXLANTunnelAddr", f.ipv4_address),
            "vxlan_tunnel_mac_addr": spec.get("vxlanTunnelMACAddr", f.mac),
            "ipv6_vxlan_tunnel_addr": spec.get("ipv6VXLANTunnelAddr", f.ipv6_address),
            "vxlan_tunnel_mac_addr_v6": spec.get("vxlanTunnelMACAddrV6", f.mac),
        }
        bgp.finish()
        spec.keep("orchRefs", f.string_list(_orch_ref))
        spec.keep("addresses", f.string_list(_node_address_entry))
        spec.keep("interfaces", f.string_list(_node_interface))
        spec.keep("wireguard", _wireguard)
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
        for key, value in (("ipv4VXLANTunnelAddr", self.ipv4_vxlan_tunnel_addr),
                           ("vxlanTunnelMACAddr", self.vxlan_tunnel_mac_addr),
                           ("ipv6VXLANTunnelAddr", self.ipv6_vxlan_tunnel_addr),
                           ("vxlanTunnelMACAddrV6", self.vxlan_tunnel_mac_addr_v6)):
            if value is not None:
                spec[key] = str(value)
        return spec


def _node_address(reader: f.FieldReader, key: str, version: int) -> Callable[[Any], Any]:
    """Calico's cidrv4 / cidrv6: an address with its subnet's prefix length, or a bare address (a /32
    or /128, with a warning: CrossSubnet compares the other nodes' addresses with this subnet)."""
    def conv(value: Any) -> Any:
        text = f.string(value)
        iface_type = ipaddress.IPv4Interface if version == 4 else ipaddress.IPv6Interface
        try:
            iface = iface_type(text)
        except ValueError:
            raise ValueError(f"Invalid IPv{version} CIDR: {text!r} is not an IPv{version} address or "
                             f"address/prefix like {'10.30.0.10/24' if version == 4 else 'fd00::10/64'}") from None
        full = iface.network.prefixlen == iface.max_prefixlen
        if full:
            how = "has no prefix length" if "/" not in text else f"is a /{iface.max_prefixlen}"
            reader.warn(key, f"{text} {how}: every other node looks like a different subnet, so CrossSubnet "
                        "pools will encapsulate all traffic; give the prefix length of the host's subnet "
                        f"(e.g. {iface.ip}/{24 if version == 4 else 64})")
        return iface
    return conv


def _mapping(value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {f.describe(value)}")
    extra = sorted(set(value) - set(allowed))
    if extra:
        raise f.FieldError(f".{extra[0]}", f.NOT_IMPLEMENTED)
    return value


def _checked(value: dict[str, Any], key: str, conv: Callable[[Any], object]) -> None:
    if value.get(key) is None:
        return
    try:
        conv(value[key])
    except ValueError as exc:
        raise f.FieldError(f".{key}", str(exc)) from None


def _orch_ref(value: Any) -> None:
    ref = _mapping(value, ("nodeName", "orchestrator"))
    _checked(ref, "nodeName", f.string)
    _checked(ref, "orchestrator", f.string)


def _node_address_entry(value: Any) -> None:
    entry = _mapping(value, ("address", "type"))
    if entry.get("address") is None:
        raise f.FieldError(".address", "is required")
    _checked(entry, "address", f.cidr_or_ip)
    _checked(entry, "type", f.one_of(*ADDRESS_TYPES))


def _node_interface(value: Any) -> None:
    entry = _mapping(value, ("name", "addresses"))
    _checked(entry, "name", f.string)
    _checked(entry, "addresses", f.string_list(f.cidr_or_ip))


def _wireguard(value: Any) -> None:
    entry = _mapping(value, ("interfaceIPv4Address", "interfaceIPv6Address"))
    _checked(entry, "interfaceIPv4Address", f.ipv4_address)
    _checked(entry, "interfaceIPv6Address", f.ipv6_address)
