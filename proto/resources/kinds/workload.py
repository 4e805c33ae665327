"""WorkloadEndpoint: a pod's interface on a node and its addresses.

Rules from Calico v3.32 libcalico-go `lib/apis/internalapi/workloadendpoint.go` (fields and `validate`
tags) and `lib/validator/v3/validator.go` (validateWorkloadEndpointSpec: every ipNetworks entry is a
single address, a /32 or /128; ipNATs inside the endpoint's networks).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar

from proto.record import record
from proto.resources import fields as f
from proto.resources.errors import FieldError
from proto.resources.kinds.base import Resource
from proto.resources.values import IPAddress, IPNetwork

_CONTAINER_ID = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?")


@record(frozen=True, slots=True)
class IPNAT:
    internal: IPAddress
    external: IPAddress


@record(frozen=True, kw_only=True)
class WorkloadEndpoint(Resource):
    kind: ClassVar[str] = "WorkloadEndpoint"
    aliases: ClassVar[tuple[str, ...]] = ("workloadendpoint", "workloadendpoints", "wep", "weps")
    KEPT: ClassVar[tuple[str, ...]] = ("containerID", "serviceAccountName", "profiles", "ports", "ipv4Gateway",
                                       "ipv6Gateway", "allowSpoofedSourcePrefixes", "qosControls")

    namespace: str | None = None
    node: str
    interface_name: str
    ip_networks: tuple[IPNetwork, ...] = ()
    mac: str | None = None
    # Identity only (which pod this is); no behaviour hangs on them.
    orchestrator: str | None = None
    workload: str | None = None
    pod: str | None = None
    endpoint: str | None = None
    # parsed and carried for later; refused while not implemented (proto/resources/pending.py)
    ip_nats: tuple[IPNAT, ...] = ()

    @classmethod
    def read_spec(cls, spec: f.FieldReader, name: str = "") -> dict[str, Any]:
        out = {
            "node": spec.get("node", f.name, required=True),
            "interface_name": spec.get("interfaceName", f.ifname, required=True),
            "ip_networks": spec.get("ipNetworks", _ip_networks, ()),
            "mac": spec.get("mac", f.mac),
            "orchestrator": spec.get("orchestrator", f.name),
            "workload": spec.get("workload", f.name),
            "pod": spec.get("pod", f.name),
            "endpoint": spec.get("endpoint", f.name),
            "ip_nats": spec.get("ipNATs", f.string_list(_ip_nat), ()),
        }
        spec.keep("containerID", _container_id)
        spec.keep("serviceAccountName", f.name)
        spec.keep("profiles", f.string_list(f.name))
        spec.keep("ports", f.string_list(_port))
        spec.keep("ipv4Gateway", f.ipv4_address)
        spec.keep("ipv6Gateway", f.ipv6_address)
        spec.keep("allowSpoofedSourcePrefixes", f.string_list(f.cidr_or_ip))
        spec.keep("qosControls", _qos)
        nets, nats = out["ip_networks"], out["ip_nats"]
        if nats and nats is not f.MISSING and nets is not f.MISSING:
            for nat in nats:
                if not any(nat.internal in n for n in nets):
                    spec.error("ipNATs", f"NAT is not in the endpoint networks: {nat.internal}")
                    break
        return out

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
        if self.ip_nats:
            spec["ipNATs"] = [{"internalIP": str(n.internal), "externalIP": str(n.external)} for n in self.ip_nats]
        return spec


def _ip_networks(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of addresses, got {f.describe(value)}")
    nets = []
    for i, item in enumerate(value):
        try:
            net = f.network_or_ip(item)
        except ValueError as exc:
            raise FieldError(f"[{i}]", str(exc)) from None
        if net.prefixlen != net.max_prefixlen:
            raise FieldError(f"[{i}]", f"IP network contains multiple addresses: {net} (a workload's "
                             f"addresses are single /{net.max_prefixlen}s)")
        nets.append(net)
    return tuple(nets)


def _ip_nat(value: Any) -> IPNAT:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping with internalIP and externalIP, got {f.describe(value)}")
    extra = sorted(set(value) - {"internalIP", "externalIP"})
    if extra:
        raise FieldError(f".{extra[0]}", f.NOT_IMPLEMENTED)
    addrs = []
    for key in ("internalIP", "externalIP"):
        if value.get(key) is None:
            raise FieldError(f".{key}", "is required")
        try:
            addrs.append(ipaddress.ip_address(f.string(value[key])))
        except ValueError:
            raise FieldError(f".{key}", f"{value[key]!r} is not an IP address") from None
    return IPNAT(addrs[0], addrs[1])


def _container_id(value: Any) -> str:
    text = f.string(value)
    if not _CONTAINER_ID.fullmatch(text):
        raise ValueError(f"{text!r} is not a container ID (letters, digits and '-', starting and ending with a "
                         "letter or digit)")
    return text


def _port(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping with name, protocol and port, got {f.describe(value)}")
    extra = sorted(set(value) - {"name", "protocol", "port", "hostPort", "hostIP"})
    if extra:
        raise FieldError(f".{extra[0]}", f.NOT_IMPLEMENTED)
    port = value.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise FieldError(".port", f"expected a port 1 to 65535, got {port!r}")


def _qos(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {f.describe(value)}")
    for key, v in value.items():
        if key == "dscp":
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise FieldError(f".{key}", f"expected a non-negative integer, got {v!r}")
