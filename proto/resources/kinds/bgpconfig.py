"""BGPConfiguration: the cluster-wide BGP settings (`default`) and node-specific ones (`node.<node name>`).

Rules from Calico v3.32: api `pkg/apis/projectcalico/v3/bgpconfig.go` (fields, CRD rules),
libcalico-go `lib/validator/v3/validator.go` (validateBGPConfigurationSpec) and `lib/clientv3/bgpconfig.go`
(fields only the `default` configuration may set); confd `pkg/backends/calico/client.go` reads
`listenPort`, `logSeverityScreen` and `prefixAdvertisements` from `node.<name>` configurations.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Any, ClassVar

from proto.record import record
from proto.resources import fields as f
from proto.resources.constants import DEFAULT_AS_NUMBER
from proto.resources.kinds.base import Resource
from proto.resources.values import (
    Community,
    IPAddress,
    IPNetwork,
    Password,
    format_duration,
    parse_as_number,
    parse_community,
)

LOG_LEVELS = ("Trace", "Debug", "Info", "Warning", "Error", "Fatal")
NODE_CONFIG_PREFIX = "node."
# clientv3 ValidateDefaultOnlyFields: only the `default` configuration may set these
DEFAULT_ONLY = ("nodeToNodeMeshEnabled", "asNumber", "serviceLoadBalancerIPs", "serviceExternalIPs",
                "serviceClusterIPs", "nodeMeshPassword", "nodeMeshMaxRestartTime")
# what confd reads from a `node.<name>` configuration; Calico ignores the rest there
PER_NODE = ("listenPort", "logSeverityScreen", "prefixAdvertisements", "communities")
_IGNORED_INTERFACE = re.compile(r"[a-zA-Z0-9_.*-]{1,15}")


@record(frozen=True, slots=True)
class NamedCommunity:
    name: str
    value: Community


@record(frozen=True, slots=True)
class PrefixAdvertisement:
    """Communities to attach to routes of `cidr` (names resolved against `communities`)."""

    cidr: IPNetwork
    communities: tuple[Community, ...]
    written: tuple[str, ...]  # as the user wrote them (names or values), for the YAML form


def _ignored_interface(value: Any) -> str:
    text = f.string(value)
    if text == "*" or not _IGNORED_INTERFACE.fullmatch(text):
        raise ValueError(f"{text!r} is not an interface name or pattern (1 to 15 of letters, digits, "
                         "'_', '.', '-', '*'; not '*' alone)")
    return text


def _log_level(value: Any) -> str | None:
    # the CRD's pattern ^(?i)(Trace|Debug|Info|Warning|Error|Fatal)?$: any case, or empty for the default
    if value == "":
        return None
    return f.one_of(*LOG_LEVELS, ignore_case=True)(value)


def _cidr_blocks(value: Any) -> tuple[IPNetwork, ...]:
    """serviceClusterIPs and friends: a list of {cidr: ...}."""
    def block(item: Any) -> IPNetwork:
        if not isinstance(item, dict):
            raise ValueError(f"expected a mapping like {{cidr: 10.96.0.0/12}}, got {f.describe(item)}")
        extra = sorted(set(item) - {"cidr"})
        if extra:
            raise f.FieldError(f".{extra[0]}", f.NOT_IMPLEMENTED)
        if item.get("cidr") is None:
            raise f.FieldError(".cidr", "is required")
        try:
            return f.network(item["cidr"])
        except ValueError as exc:
            raise f.FieldError(".cidr", str(exc)) from None
    return f.string_list(block)(value)


@record(frozen=True, kw_only=True)
class BGPConfiguration(Resource):
    kind: ClassVar[str] = "BGPConfiguration"
    aliases: ClassVar[tuple[str, ...]] = ("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs")
    KEPT: ClassVar[tuple[str, ...]] = ("ignoredInterfaces", "programClusterRoutes")

    name: str = "default"
    as_number: int = DEFAULT_AS_NUMBER
    node_to_node_mesh_enabled: bool = True
    listen_port: int = 179
    node_mesh_password: Password | None = None
    node_mesh_max_restart_time: float | None = None  # seconds; None: the speaker's default (120 s)
    log_severity_screen: str = "Info"
    bind_mode: str | None = None  # None (unset): tortie listens on the Node's addresses, like NodeIP
    communities: tuple[NamedCommunity, ...] = ()
    prefix_advertisements: tuple[PrefixAdvertisement, ...] = ()
    service_cluster_ips: tuple[IPNetwork, ...] = ()
    service_external_ips: tuple[IPNetwork, ...] = ()
    service_load_balancer_ips: tuple[IPNetwork, ...] = ()
    service_load_balancer_aggregation: str | None = None  # Enabled (the default when unset) or Disabled
    # the priority (LOCAL_PREF 2^31-1-p) a BGPFilter sees on this node's own routes; None: 1024
    ipv4_normal_route_priority: int | None = None
    ipv6_normal_route_priority: int | None = None
    # parsed and carried; refused while not implemented (proto/resources/pending.py)
    local_workload_peering_ipv4: IPAddress | None = None
    local_workload_peering_ipv6: IPAddress | None = None
    # tortie's extensions (Calico keeps these in FelixConfiguration)
    prometheus_metrics_enabled: bool = True
    prometheus_metrics_host: str | None = None  # None: the daemon's default management address
    prometheus_metrics_port: int | None = None
    # which spec fields were written (node-specific configurations override only those)
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def node_specific(self) -> str | None:
        """The node a `node.<name>` configuration is for."""
        return self.name[len(NODE_CONFIG_PREFIX):] if self.name.startswith(NODE_CONFIG_PREFIX) else None

    @classmethod
    def read_spec(cls, spec: f.FieldReader, name: str = "default") -> dict[str, Any]:
        explicit = frozenset(k for k in spec.data if spec.data[k] is not None)
        if name != "default":
            for key in DEFAULT_ONLY:
                if spec.has(key):
                    spec.error(key, f"Cannot set {key} on a non default BGP Configuration.")
            if not name.startswith(NODE_CONFIG_PREFIX):
                spec.warn("", f"a BGPConfiguration named {name!r} is neither 'default' nor 'node.<node name>': "
                          "Calico and tortie ignore it")
            else:
                for key in sorted(explicit - set(PER_NODE) - set(DEFAULT_ONLY)):
                    spec.warn(key, "Calico reads only listenPort, logSeverityScreen and prefixAdvertisements "
                              "from a node-specific BGPConfiguration; this field has no effect here")
        communities = spec.get("communities", _communities, ())
        out: dict[str, Any] = {
            "as_number": spec.get("asNumber", parse_as_number, DEFAULT_AS_NUMBER),
            "node_to_node_mesh_enabled": spec.get("nodeToNodeMeshEnabled", f.boolean, True),
            "listen_port": spec.get("listenPort", f.integer(1, 65535), 179),
            "node_mesh_password": spec.get("nodeMeshPassword", f.password),
            "node_mesh_max_restart_time": spec.get("nodeMeshMaxRestartTime", f.duration(0, 4095)),
            "log_severity_screen": spec.get("logSeverityScreen", _log_level, None) or "Info",
            "bind_mode": spec.get("bindMode", f.one_of("None", "NodeIP")),
            "communities": communities,
            "prefix_advertisements": spec.get(
                "prefixAdvertisements",
                _prefix_advertisements(communities if communities is not f.MISSING else ()), ()),
            "service_cluster_ips": spec.get("serviceClusterIPs", _cidr_blocks, ()),
            "service_external_ips": spec.get("serviceExternalIPs", _cidr_blocks, ()),
            "service_load_balancer_ips": spec.get("serviceLoadBalancerIPs", _cidr_blocks, ()),
            "service_load_balancer_aggregation": spec.get("serviceLoadBalancerAggregation",
                                                          f.one_of("Enabled", "Disabled")),
            "ipv4_normal_route_priority": spec.get("ipv4NormalRoutePriority", f.integer(1, 2147483646)),
            "ipv6_normal_route_priority": spec.get("ipv6NormalRoutePriority", f.integer(1, 2147483646)),
            "local_workload_peering_ipv4": spec.get("localWorkloadPeeringIPV4", f.ipv4_address),
            "local_workload_peering_ipv6": spec.get("localWorkloadPeeringIPV6", f.ipv6_address),
            "prometheus_metrics_enabled": spec.get("prometheusMetricsEnabled", f.boolean, True),
            "prometheus_metrics_host": spec.get("prometheusMetricsHost", f.address_text),
            "prometheus_metrics_port": spec.get("prometheusMetricsPort", f.integer(1, 65535)),
            "explicit": explicit,
        }
        spec.keep("ignoredInterfaces", f.string_list(_ignored_interface))
        spec.keep("programClusterRoutes", f.one_of("Enabled", "Disabled"))
        # CRD rules (x-kubernetes-validations) and validateBGPConfigurationSpec
        if out["node_to_node_mesh_enabled"] is False:
            if out["node_mesh_password"] is not None:
                spec.error("nodeMeshPassword", "nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false")
            if out["node_mesh_max_restart_time"] is not None:
                spec.error("nodeMeshMaxRestartTime",
                           "nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false")
        if communities and communities is not f.MISSING and not out["prefix_advertisements"]:
            spec.error("communities", "communities are defined but not used in prefixAdvertisements")
        return out

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.name == "default":
            spec.update(asNumber=self.as_number, nodeToNodeMeshEnabled=self.node_to_node_mesh_enabled,
                        listenPort=self.listen_port, logSeverityScreen=self.log_severity_screen,
                        prometheusMetricsEnabled=self.prometheus_metrics_enabled)
        else:
            if "listenPort" in self.explicit:
                spec["listenPort"] = self.listen_port
            if "logSeverityScreen" in self.explicit:
                spec["logSeverityScreen"] = self.log_severity_screen
            if "prometheusMetricsEnabled" in self.explicit:
                spec["prometheusMetricsEnabled"] = self.prometheus_metrics_enabled
        if self.node_mesh_password:
            spec["nodeMeshPassword"] = self.node_mesh_password.to_dict()
        if self.node_mesh_max_restart_time is not None:
            spec["nodeMeshMaxRestartTime"] = format_duration(self.node_mesh_max_restart_time)
        if self.bind_mode is not None:
            spec["bindMode"] = self.bind_mode
        if self.communities:
            spec["communities"] = [{"name": c.name, "value": str(c.value)} for c in self.communities]
        if self.prefix_advertisements:
            spec["prefixAdvertisements"] = [{"cidr": str(p.cidr), "communities": list(p.written)}
                                            for p in self.prefix_advertisements]
        for key, nets in (("serviceClusterIPs", self.service_cluster_ips),
                          ("serviceExternalIPs", self.service_external_ips),
                          ("serviceLoadBalancerIPs", self.service_load_balancer_ips)):
            if nets:
                spec[key] = [{"cidr": str(n)} for n in nets]
        for key, value in (("serviceLoadBalancerAggregation", self.service_load_balancer_aggregation),
                           ("ipv4NormalRoutePriority", self.ipv4_normal_route_priority),
                           ("ipv6NormalRoutePriority", self.ipv6_normal_route_priority)):
            if value is not None:
                spec[key] = value
        if self.local_workload_peering_ipv4 is not None:
            spec["localWorkloadPeeringIPV4"] = str(self.local_workload_peering_ipv4)
        if self.local_workload_peering_ipv6 is not None:
            spec["localWorkloadPeeringIPV6"] = str(self.local_workload_peering_ipv6)
        if self.prometheus_metrics_host is not None:
            spec["prometheusMetricsHost"] = self.prometheus_metrics_host
        if self.prometheus_metrics_port is not None:
            spec["prometheusMetricsPort"] = self.prometheus_metrics_port
        return spec


def _communities(value: Any) -> tuple[NamedCommunity, ...]:
    def one(item: Any) -> NamedCommunity:
        if not isinstance(item, dict):
            raise ValueError(f"expected a mapping with name and value, got {f.describe(item)}")
        extra = sorted(set(item) - {"name", "value"})
        if extra:
            raise f.FieldError(f".{extra[0]}", f.NOT_IMPLEMENTED)
        for key in ("name", "value"):
            if item.get(key) in (None, ""):
                raise f.FieldError(f".{key}", "is required")
        try:
            name = f.name(item["name"])
        except ValueError as exc:
            raise f.FieldError(".name", str(exc)) from None
        try:
            return NamedCommunity(name, parse_community(item["value"]))
        except ValueError as exc:
            raise f.FieldError(".value", f"invalid community value or format used: {exc}") from None
    out = f.string_list(one)(value)
    names = [c.name for c in out]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise f.FieldError(f"[{i}].name", f"community {n!r} is defined twice")
    return out


def _prefix_advertisements(defined: tuple[NamedCommunity, ...]) -> Any:
    by_name = {c.name: c.value for c in defined}

    def one(item: Any) -> PrefixAdvertisement:
        if not isinstance(item, dict):
            raise ValueError(f"expected a mapping with cidr and communities, got {f.describe(item)}")
        extra = sorted(set(item) - {"cidr", "communities"})
        if extra:
            raise f.FieldError(f".{extra[0]}", f.NOT_IMPLEMENTED)
        if item.get("cidr") in (None, ""):
            raise f.FieldError(".cidr", "is required")
        try:
            cidr = f.network(item["cidr"])
        except ValueError as exc:
            raise f.FieldError(".cidr", str(exc)) from None
        written = item.get("communities")
        if not written:
            raise f.FieldError(".communities", "is required")
        if not isinstance(written, list):
            raise f.FieldError(".communities", f"expected a list, got {f.describe(written)}")
        values = []
        for i, c in enumerate(written):
            if isinstance(c, str) and c in by_name:
                values.append(by_name[c])
                continue
            try:
                values.append(parse_community(c))
            except ValueError:
                raise f.FieldError(f".communities[{i}]", f"community used is invalid or not defined: {c!r} is "
                                   "neither aa:nn, aa:nn:mm nor a name in spec.communities") from None
        return PrefixAdvertisement(cidr, tuple(values), tuple(str(c) for c in written))
    return f.string_list(one)
