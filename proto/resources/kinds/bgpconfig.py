"""BGPConfiguration: the cluster-wide BGP settings (only the one named `default`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from proto.resources import fields as f
from proto.resources.constants import DEFAULT_AS_NUMBER
from proto.resources.kinds.base import Resource
from proto.resources.values import Password, format_duration, parse_as_number


@dataclass(frozen=True, kw_only=True)
class BGPConfiguration(Resource):
    kind: ClassVar[str] = "BGPConfiguration"
    aliases: ClassVar[tuple[str, ...]] = ("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs")

    name: str = "default"
    as_number: int = DEFAULT_AS_NUMBER
    node_to_node_mesh_enabled: bool = True
    listen_port: int = 179
    node_mesh_password: Password | None = None
    node_mesh_max_restart_time: float | None = None  # seconds; None: the speaker's default (120 s)
    log_severity_screen: str = "Info"
    prometheus_metrics_enabled: bool = True
    prometheus_metrics_host: str | None = None  # None: the daemon's default management address
    prometheus_metrics_port: int | None = None

    @classmethod
    def _read(cls, spec: f.FieldReader) -> dict[str, Any]:
        return {
            "as_number": spec.get("asNumber", parse_as_number, DEFAULT_AS_NUMBER),
            "node_to_node_mesh_enabled": spec.get("nodeToNodeMeshEnabled", f.boolean, True),
            "listen_port": spec.get("listenPort", f.integer(1, 65535), 179),
            "node_mesh_password": spec.get("nodeMeshPassword", f.password),
            "node_mesh_max_restart_time": spec.get("nodeMeshMaxRestartTime", f.duration),
            "log_severity_screen": spec.get("logSeverityScreen",
                                            f.one_of("Debug", "Info", "Warning", "Error", "Fatal"), "Info"),
            "prometheus_metrics_enabled": spec.get("prometheusMetricsEnabled", f.boolean, True),
            "prometheus_metrics_host": spec.get("prometheusMetricsHost", f.address_text),
            "prometheus_metrics_port": spec.get("prometheusMetricsPort", f.integer(1, 65535)),
        }

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "asNumber": self.as_number, "nodeToNodeMeshEnabled": self.node_to_node_mesh_enabled,
            "listenPort": self.listen_port, "logSeverityScreen": self.log_severity_screen,
            "prometheusMetricsEnabled": self.prometheus_metrics_enabled,
        }
        if self.node_mesh_password:
            spec["nodeMeshPassword"] = {"file": str(self.node_mesh_password.file)}
        if self.node_mesh_max_restart_time is not None:
            spec["nodeMeshMaxRestartTime"] = format_duration(self.node_mesh_max_restart_time)
        if self.prometheus_metrics_host is not None:
            spec["prometheusMetricsHost"] = self.prometheus_metrics_host
        if self.prometheus_metrics_port is not None:
            spec["prometheusMetricsPort"] = self.prometheus_metrics_port
        return spec


