"""WorkloadEndpoint: a pod's interface on a node and its addresses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from proto.resources import fields as f
from proto.resources.errors import FieldError
from proto.resources.kinds.base import Resource
from proto.resources.values import IPNetwork


@dataclass(frozen=True, kw_only=True)
class WorkloadEndpoint(Resource):
    kind: ClassVar[str] = "WorkloadEndpoint"
    aliases: ClassVar[tuple[str, ...]] = ("workloadendpoint", "workloadendpoints", "wep", "weps")

    namespace: str | None = None
    node: str
    interface_name: str
    ip_networks: tuple[IPNetwork, ...]
    mac: str | None = None
    # Identity only (which pod this is); no behaviour hangs on them.
    orchestrator: str | None = None
    workload: str | None = None
    pod: str | None = None
    endpoint: str | None = None

    @classmethod
    def _read(cls, spec: f.FieldReader) -> dict[str, Any]:
        return {
            "node": spec.get("node", f.name, required=True),
            "interface_name": spec.get("interfaceName", f.ifname, required=True),
            "ip_networks": spec.get("ipNetworks", _ip_networks, required=True),
            "mac": spec.get("mac", f.mac),
            "orchestrator": spec.get("orchestrator", f.string),
            "workload": spec.get("workload", f.string),
            "pod": spec.get("pod", f.string),
            "endpoint": spec.get("endpoint", f.string),
        }

    def metadata_dict(self) -> dict[str, Any]:
        meta = super().metadata_dict()
        if self.namespace is not None:
            meta["namespace"] = self.namespace
        return meta

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"interfaceName": self.interface_name,
                                "ipNetworks": [str(n) for n in self.ip_networks], "node": self.node}
        for key in ("mac", "orchestrator", "workload", "pod", "endpoint"):
            if getattr(self, key) is not None:
                spec[key] = getattr(self, key)
        return spec


def _ip_networks(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of addresses, got {f.describe(value)}")
    nets = []
    for i, item in enumerate(value):
        try:
            nets.append(f.host_network(item))
        except ValueError as exc:
            raise FieldError(f"[{i}]", str(exc)) from None
    return tuple(nets)


