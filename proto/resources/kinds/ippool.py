"""IPPool: a range of pod addresses, its block size, encapsulation and NAT."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from proto.resources import fields as f
from proto.resources.constants import BLOCK_SIZE_RANGE, DEFAULT_BLOCK_SIZE, ENCAP_MODES, LINK_LOCAL
from proto.resources.errors import FieldError
from proto.resources.kinds.base import Resource
from proto.resources.kinds.node import Node
from proto.resources.values import IPNetwork
from proto.selector import ALL, Selector


@dataclass(frozen=True, kw_only=True)
class IPPool(Resource):
    kind: ClassVar[str] = "IPPool"
    aliases: ClassVar[tuple[str, ...]] = ("ippool", "ippools", "ipp", "ipps", "pool", "pools")

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
        return self.cidr.subnets(new_prefix=self.block_size)

    @classmethod
    def _read(cls, spec: f.FieldReader) -> dict[str, Any]:
        cidr = spec.get("cidr", f.network, required=True)
        version = cidr.version if isinstance(cidr, ipaddress.IPv4Network | ipaddress.IPv6Network) else 4
        lo, hi = BLOCK_SIZE_RANGE[version]
        out = {
            "cidr": cidr,
            "block_size": spec.get("blockSize", f.integer(lo, hi), DEFAULT_BLOCK_SIZE[version]),
            "ipip_mode": spec.get("ipipMode", f.one_of(*ENCAP_MODES), "Never"),
            "vxlan_mode": spec.get("vxlanMode", f.one_of(*ENCAP_MODES), "Never"),
            "nat_outgoing": spec.get("natOutgoing", f.boolean, False),
            "disabled": spec.get("disabled", f.boolean, False),
            "disable_bgp_export": spec.get("disableBGPExport", f.boolean, False),
            "node_selector": spec.get("nodeSelector", f.selector, ALL),
            "allowed_uses": spec.get("allowedUses", _allowed_uses, ("Workload", "Tunnel")),
            "assignment_mode": spec.get("assignmentMode", f.one_of("Automatic", "Manual"), "Automatic"),
        }
        if spec.errors:
            return out
        if cidr.prefixlen > out["block_size"]:
            spec.error("blockSize", f"a /{out['block_size']} block does not fit in the pool {cidr}")
        for ll in LINK_LOCAL:
            if cidr.version == ll.version and cidr.overlaps(ll):
                spec.error("cidr", f"{cidr} overlaps the link-local range {ll}")
        if out["ipip_mode"] != "Never" and out["vxlan_mode"] != "Never":
            spec.error("vxlanMode", "IPIP and VXLAN cannot both be enabled on a pool "
                       f"(ipipMode is {out['ipip_mode']})")
        if version == 6 and out["ipip_mode"] != "Never":
            spec.error("ipipMode", "IPIP is not supported on IPv6 pools")
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


def _allowed_uses(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of Workload, Tunnel; got {f.describe(value)}")
    uses = []
    for i, item in enumerate(value):
        if item not in ("Workload", "Tunnel"):
            raise FieldError(f"[{i}]", f"{item!r} is not one of Workload, Tunnel")
        uses.append(item)
    return tuple(uses)
