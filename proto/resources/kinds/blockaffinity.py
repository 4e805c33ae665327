"""BlockAffinity: one block of a pool, affine to one node.

Rules from Calico v3.32 api `pkg/apis/projectcalico/v3/blockaffinity.go` (state enum, `type`, `deleted`),
libcalico-go `lib/validator/v3/validator.go` (validateBlockAffinitySpec: `deleted` cannot be true) and
`lib/ipam/ipam.go` (an empty state is read as confirmed).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from proto.record import record
from proto.resources import fields as f
from proto.resources.kinds.base import Resource
from proto.resources.values import IPNetwork

STATES = ("confirmed", "pending", "pendingDeletion")


def block_affinity_name(node: str, cidr: IPNetwork) -> str:
    """Calico's BlockAffinity name: node, then the block with '.', ':' and '/' turned into '-'."""
    return f"{node}-{re.sub(r'[.:/]', '-', str(cidr))}"


def _state(value: Any) -> str:
    if value == "":
        return "confirmed"
    return f.one_of(*STATES)(value)


def _deleted(value: Any) -> bool:
    if f.bool_or_text(value):
        raise ValueError('spec.Deleted cannot be set to "true"')
    return False


@record(frozen=True, kw_only=True)
class BlockAffinity(Resource):
    kind: ClassVar[str] = "BlockAffinity"
    aliases: ClassVar[tuple[str, ...]] = ("blockaffinity", "blockaffinities", "blockaff", "blockaffs",
                                          "affinity", "affinities")

    node: str
    cidr: IPNetwork
    state: str = "confirmed"
    type: str | None = None  # "host" for a node's blocks (Calico 3.32 writes it); descriptive
    deleted: bool = False

    @property
    def confirmed(self) -> bool:
        return self.state == "confirmed" and not self.deleted

    @classmethod
    def read_spec(cls, spec: f.FieldReader, name: str = "") -> dict[str, Any]:
        return {
            "node": spec.get("node", f.name, required=True),
            "cidr": spec.get("cidr", f.network, required=True),
            "state": spec.get("state", _state, "confirmed"),
            "type": spec.get("type", f.string),
            "deleted": spec.get("deleted", _deleted, False),
        }

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"cidr": str(self.cidr), "deleted": self.deleted, "node": self.node,
                                "state": self.state}
        if self.type is not None:
            spec["type"] = self.type
        return spec
