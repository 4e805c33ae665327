"""IPPool: a range of pod addresses, its block size, encapsulation and NAT.

Rules from Calico v3.32: api `pkg/apis/projectcalico/v3/ippool.go` (fields, enums, CRD rules),
libcalico-go `lib/validator/v3/validator.go` (validateIPPoolSpec) and `lib/clientv3/ippool.go`
(validateAndSetDefaults: block size ranges, strict masking, defaults, immutable CIDR and block size).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, ClassVar

from proto.record import record
from proto.resources import fields as f
from proto.resources.constants import BLOCK_SIZE_RANGE, DEFAULT_BLOCK_SIZE, ENCAP_MODES, LINK_LOCAL
from proto.resources.errors import FieldError
from proto.resources.kinds.base import Resource
from proto.resources.kinds.node import Node
from proto.resources.values import IPNetwork
from proto.selector import ALL, Selector


@record(frozen=True, kw_only=True)
class IPPool(Resource):
    kind: ClassVar[str] = "IPPool"
    aliases: ClassVar[tuple[str, ...]] = ("ippool", "ippools", "ipp", "ipps", "pool", "pools")
    KEPT: ClassVar[tuple[str, ...]] = ("namespaceSelector",)

    cidr: IPNetwork
    block_size: int
    ipip_mode: str = "Never"
    vxlan_mode: str = "Never"
    nat_outgoing: bool = False
    disabled: bool = False
    disable_bgp_export: bool = False
    node_selector: Selector = ALL
    allowed_uses: tuple[str, ...] = ("Workload", "Tunnel")
    assignment_mode: str = "Automatic"

    @property
    def mode(self) -> str | None:
        """Calico's rule: VXLAN if vxlanMode is not Never, else IPIP if ipipMode is not Never, else None."""
        if self.vxlan_mode != "Never":
            return "vxlan"
        if self.ipip_mode != "Never":
            return "ipip"
        return None

    @property
    def encapsulation(self) -> str:
        """The active mode's setting: Never, Always or CrossSubnet."""
        if self.vxlan_mode != "Never":
            return self.vxlan_mode
        return self.ipip_mode

    def encapsulate_between(self, local: Node, remote: Node) -> bool:
        """Whether traffic from `local` to a block of `remote` is encapsulated (CrossSubnet: only when the
        remote node's address is outside the local Node's `bgp.ipv4Address` subnet)."""
        if self.encapsulation == "Always":
            return True
        if self.encapsulation == "Never":
            return False
        if local.ipv4_address is None or remote.ipv4_address is None:
            return True
        return remote.ipv4_address.ip not in local.ipv4_address.network

    def blocks(self) -> Iterator[IPNetwork]:
        if self.block_size < self.cidr.prefixlen:
            return iter(())  # a disabled pool smaller than its block size has no blocks
        return self.cidr.subnets(new_prefix=self.block_size)

    @property
    def load_balancer(self) -> bool:
        return "LoadBalancer" in self.allowed_uses

    @classmethod
    def read_spec(cls, spec: f.FieldReader, name: str = "") -> dict[str, Any]:
        cidr = spec.get("cidr", _pool_cidr, required=True)
        version = cidr.version if isinstance(cidr, ipaddress.IPv4Network | ipaddress.IPv6Network) else 4
        out = {
            "cidr": cidr,
            "block_size": spec.get("blockSize", _block_size(version), DEFAULT_BLOCK_SIZE[version]),
            "ipip_mode": spec.get("ipipMode", _encap_mode, "Never"),
            "vxlan_mode": spec.get("vxlanMode", _encap_mode, "Never"),
            "nat_outgoing": spec.get("natOutgoing", f.boolean, False),
            "disabled": spec.get("disabled", f.boolean, False),
            "disable_bgp_export": spec.get("disableBGPExport", f.boolean, False),
            "node_selector": spec.get("nodeSelector", _pool_selector("nodeSelector"), ALL),
            "allowed_uses": spec.get("allowedUses", _allowed_uses, DEFAULT_USES),
            "assignment_mode": spec.get("assignmentMode", f.one_of("Automatic", "Manual"), "Automatic"),
        }
        has_namespace_selector = spec.has("namespaceSelector")
        spec.keep("namespaceSelector", _pool_selector("namespaceSelector"))
        if spec.errors:
            return out
        # libcalico-go clientv3 ippool.go validateAndSetDefaults, validator.go validateIPPoolSpec and the
        # CRD's x-kubernetes-validations, in their words
        if not out["disabled"] and cidr.prefixlen > out["block_size"]:
            spec.error("cidr", "IP pool size is too small for use with Calico IPAM. It must be equal to or "
                       f"greater than the block size (/{out['block_size']}).")
        for ll in LINK_LOCAL:
            if cidr.version == ll.version and cidr.overlaps(ll):
                spec.error("cidr", f"IP pool range overlaps with IPv{ll.version} Link Local range {ll}")
        if out["ipip_mode"] != "Never" and out["vxlan_mode"] != "Never":
            spec.error("vxlanMode", "ipipMode and vxlanMode cannot both be enabled "
                       f"(ipipMode is {out['ipip_mode']})")
        if version == 6 and out["ipip_mode"] != "Never":
            spec.error("ipipMode", "IPIP is not supported on IPv6 pools")
        uses = out["allowed_uses"]
        if "LoadBalancer" in uses:
            if "Workload" in uses or "Tunnel" in uses:
                spec.error("allowedUses", "LoadBalancer cannot be combined with Workload or Tunnel allowed uses")
            if out["ipip_mode"] != "Never" or out["vxlan_mode"] != "Never":
                spec.error("allowedUses", "LoadBalancer IP pool cannot have IPIP or VXLAN enabled")
            if out["disable_bgp_export"]:
                # validateIPPoolSpec refuses disableBGPExport: true here (its message says the opposite)
                spec.error("disableBGPExport", "an IP Pool with AllowedUse LoadBalancer cannot set "
                           "disableBGPExport: true")
            if out["node_selector"].source != "all()":
                spec.error("nodeSelector", "IP Pool with AllowedUse LoadBalancer must have node selector set "
                           "to all()")
        if "Tunnel" in uses and has_namespace_selector:
            spec.error("namespaceSelector", "IP Pool with AllowedUse Tunnel cannot have namespaceSelector "
                       "specified - tunnel IPs are not namespaced resources")
        return out

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "allowedUses": list(self.allowed_uses), "blockSize": self.block_size, "cidr": str(self.cidr),
            "ipipMode": self.ipip_mode, "natOutgoing": self.nat_outgoing,
            "nodeSelector": self.node_selector.source, "vxlanMode": self.vxlan_mode,
        }
        if self.disabled:
            spec["disabled"] = True
        if self.disable_bgp_export:
            spec["disableBGPExport"] = True
        if self.assignment_mode != "Automatic":
            spec["assignmentMode"] = self.assignment_mode
        return spec


DEFAULT_USES = ("Workload", "Tunnel")
ALLOWED_USES = ("Workload", "Tunnel", "LoadBalancer")


def _pool_cidr(value: Any) -> IPNetwork:
    text = f.string(value)
    if len(text) > 48:
        raise ValueError("may not be longer than 48 characters")
    if "/" not in text:
        raise ValueError(f"IPPool CIDR must be a valid subnet: {text!r} has no prefix length")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"IPPool CIDR must be a valid subnet: {text!r} is not a CIDR like 192.168.0.0/16") from None
    raise ValueError(f"IPPool CIDR is not strictly masked: {text!r} has host bits set; did you mean {loose}?")


def _block_size(version: int) -> Any:
    lo, hi = BLOCK_SIZE_RANGE[version]

    def conv(value: Any) -> int:
        size = f.integer(-2**31, 2**31 - 1)(value)
        if size == 0:
            return DEFAULT_BLOCK_SIZE[version]  # Calico: 0 means the default
        if not lo <= size <= hi:
            raise ValueError(f"IPv{version} block size must be between {lo} and {hi}")
        return size
    return conv


def _encap_mode(value: Any) -> str:
    if value == "":
        return "Never"  # the empty string is Calico's "not set"
    return f.one_of(*ENCAP_MODES)(value)


def _pool_selector(key: str) -> Any:
    def conv(value: Any) -> Selector:
        sel = f.selector(value)
        if "global(" in sel.source:
            raise ValueError(f"global() selector is not valid for IPPool {key} - use all() instead")
        return sel
    return conv


def _allowed_uses(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of Workload, Tunnel, LoadBalancer; got {f.describe(value)}")
    if not value:
        return DEFAULT_USES  # Calico: empty means the default
    if len(value) > 10:
        raise ValueError("must have at most 10 items")
    uses: list[str] = []
    for i, item in enumerate(value):
        if item not in ALLOWED_USES:
            raise FieldError(f"[{i}]", f"unknown use: {item!r} is not one of {', '.join(ALLOWED_USES)}")
        if item in uses:
            raise FieldError(f"[{i}]", f"Duplicate value: {item!r}")
        uses.append(item)
    return tuple(uses)
