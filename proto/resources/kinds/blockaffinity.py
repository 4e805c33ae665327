"""BlockAffinity: one block of a pool, affine to one node."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from proto.resources import fields as f
from proto.resources.kinds.base import Resource
from proto.resources.values import IPNetwork


def block_affinity_name(node: str, cidr: IPNetwork) -> str:
    """Calico's BlockAffinity name: node, then the block with '.', ':' and '/' turned into '-'."""
    return f"{node}-{re.sub(r'[.:/]', '-', str(cidr))}"


@dataclass(frozen=True, kw_only=True)
class BlockAffinity(Resource):
    kind: ClassVar[str] = "BlockAffinity"
    aliases: ClassVar[tuple[str, ...]] = ("blockaffinity", "blockaffinities", "blockaff", "blockaffs")

    node: str
    cidr: IPNetwork
    state: str = "confirmed"
    deleted: bool = False

    @property
    def confirmed(self) -> bool:
        return self.state == "confirmed" and not self.deleted

    @classmethod
    def _read(cls, spec: f.FieldReader) -> dict[str, Any]:
        return {
            "node": spec.get("node", f.name, required=True),
            "cidr": spec.get("cidr", f.network, required=True),
            "state": spec.get("state", f.one_of("confirmed", "pending", "pendingDeletion"), "confirmed"),
            "deleted": spec.get("deleted", f.bool_or_text, False),
        }

    def spec_dict(self) -> dict[str, Any]:
        # Calico writes `deleted` as a string; so do we, so that its tools read our output too.
        return {"cidr": str(self.cidr), "deleted": "true" if self.deleted else "false", "node": self.node,
                "state": self.state}


