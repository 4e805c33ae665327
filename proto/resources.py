"""The Calico v3 resources tortie reads: schema, defaults, validation, YAML load and dump, the cluster model.

Documents are composed to PyYAML nodes first so that every field keeps the line it was written on; an
error then names the file, the document, the line and the field path, e.g.

    cluster.yaml: document 3 (IPPool default-ipv4-ippool), line 12: spec.ipipMode: 'Sometimes' is not
    one of Never, Always, CrossSubnet

Every field is read explicitly; a field left over after reading is one tortie does not implement, and is
rejected by name rather than silently ignored. Only bookkeeping metadata a Calico datastore adds
(`creationTimestamp`, `resourceVersion`, `uid`, ...) and `status` are accepted and dropped, so that the
output of `calicoctl get -o yaml` applies unchanged.

The resource objects are frozen: the daemons share one `ClusterModel` and swap it whole on a change.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from proto.selector import ALL, Selector, SelectorError, parse_selector

API_VERSION = "projectcalico.org/v3"
DEFAULT_AS_NUMBER = 64512
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
BLOCK_SIZE_RANGE = {4: (20, 32), 6: (116, 128)}
ENCAP_MODES = ("Never", "Always", "CrossSubnet")
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))

# Written by a Calico datastore (Kubernetes API or etcd), not by the operator: accepted and dropped.
IGNORED_METADATA = frozenset({
    "creationTimestamp", "resourceVersion", "uid", "generation", "annotations", "selfLink",
    "managedFields", "finalizers", "ownerReferences",
})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


# --- errors -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Problem:
    """One validation error or warning, located as precisely as the input allows."""

    message: str
    source: str = ""
    document: int | None = None  # 1-based, counting every `---` document of the file
    item: int | None = None  # 1-based position inside a `<Kind>List` document
    kind: str | None = None
    name: str | None = None
    line: int | None = None  # 1-based
    path: str = ""

    def __str__(self) -> str:
        where: list[str] = []
        if self.document is not None:
            doc = f"document {self.document}"
            if self.item is not None:
                doc += f" item {self.item}"
            if self.kind:
                doc += f" ({self.kind} {self.name})" if self.name else f" ({self.kind})"
            where.append(doc)
        if self.line is not None:
            where.append(f"line {self.line}")
        head = f"{self.source}: " if self.source else ""
        if where:
            head += ", ".join(where) + ": "
        if self.path:
            head += f"{self.path}: "
        return head + self.message


class ValidationError(ValueError):
    """The input is not a valid cluster configuration; `problems` lists every error found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NotFoundError(LookupError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"resource does not exist: {kind}({name})")
        self.kind = kind
        self.name = name


class _FieldError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a resource was read from, so that cross-resource checks can point at its lines too."""

    source: str
    document: int
    item: int | None = None
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)

    def line_for(self, path: str) -> int | None:
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if ("." in path or "[" in path) else ""

    def problem(self, kind: str, name: str | None, path: str, message: str) -> Problem:
        return Problem(message, self.source, self.document, self.item, kind, name, self.line_for(path), path)


# --- small immutable helpers --------------------------------------------------------------------

class Labels(Mapping[str, str]):
    """A frozen, hashable label map."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, str] = dict(sorted(pairs))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return f"Labels({self._items!r})"


@dataclass(frozen=True, slots=True)
class Password:
    """A BGP password kept in a file (Calico's `secretKeyRef` needs Kubernetes; this is tortie's stand-in).

    YAML: `password: {file: /etc/tortie/bgp-password}`. The file holds the password; one trailing newline
    is dropped. It is read when a session is configured, so it can be rotated without editing the cluster.
    """

    file: Path

    def read(self) -> str:
        text = self.file.read_text()
        return text[:-1] if text.endswith("\n") else text


def format_duration(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (`120s`, `2m`, `1m30s`, `500ms`) in seconds, as Calico's durations are written."""
    pos, total = 0, 0.0
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    while pos < len(text):
        m = _DURATION_RE.match(text, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration like 120s, 2m or 1m30s")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total


def vtep_mac_for(node_name: str) -> str:
    """The VTEP MAC Calico derives for a node without `vxlanTunnelMACAddr`: 0x66, then SHA-1(name)[0:5]."""
    digest = hashlib.sha1(node_name.encode()).digest()
    return ":".join(f"{b:02x}" for b in b"f" + digest[:5])


def workload_interface_name(workload_id: str, prefix: str = "cali") -> str:
    """Calico's host-side veth name: prefix + the first hex digits of SHA-1(id), 15 characters in all."""
    return prefix + hashlib.sha1(workload_id.encode()).hexdigest()[: 15 - len(prefix)]


def parse_as_number(value: Any) -> int:
    """An AS number as Calico accepts it: an integer or asdot `X.Y`."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an AS number")
    if isinstance(value, int):
        asn = value
    elif isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        high, low = (int(p) for p in value.split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise ValueError(f"{value!r} is not an AS number")
        asn = high << 16 | low
    elif isinstance(value, str) and value.isdigit():
        asn = int(value)
    else:
        raise ValueError(f"{value!r} is not an AS number")
    if not 0 < asn < 2**32:
        raise ValueError(f"{value!r} is not an AS number (1 to 4294967295)")
    return asn


# --- reading fields -----------------------------------------------------------------------------

T = TypeVar("T")
_MISSING: Any = object()


class _Reader:
    """Reads the fields of one mapping; whatever is not read is reported as unsupported."""

    def __init__(self, data: Any, path: str, errors: list[_FieldError], warnings: list[_FieldError]) -> None:
        self.path = path
        self.errors = errors
        self.warnings = warnings
        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.append(_FieldError(path, f"expected a mapping, got {_describe(data)}"))
            data = {}
        self.data: dict[str, Any] = dict(data)

    def _sub_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, conv: Callable[[Any], T], default: T = None, *,  # type: ignore[assignment]
            required: bool = False) -> T:
        path = self._sub_path(key)
        raw = self.data.pop(key, None)
        if raw is None:
            if required:
                self.errors.append(_FieldError(path, "is required"))
                return _MISSING
            return default
        try:
            return conv(raw)
        except _FieldError as exc:
            self.errors.append(_FieldError(f"{path}{exc.path}", exc.message))
        except (ValueError, TypeError) as exc:
            self.errors.append(_FieldError(path, str(exc)))
        return _MISSING

    def sub(self, key: str) -> _Reader:
        return _Reader(self.data.pop(key, None), self._sub_path(key), self.errors, self.warnings)

    def drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.data.pop(key, None)

    def error(self, key: str, message: str) -> None:
        self.errors.append(_FieldError(self._sub_path(key) if key else self.path, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(_FieldError(self._sub_path(key), message))

    def finish(self) -> None:
        for key in self.data:
            self.errors.append(_FieldError(self._sub_path(str(key)), "tortie does not implement this field"))


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"{value} is not in the range {lo} to {hi}")
        return value
    return conv


def _enum(*choices: str) -> Callable[[Any], str]:
    def conv(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return conv


def _name(value: Any) -> str:
    value = _str(value)
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?", value):
        raise ValueError(f"{value!r} is not a valid name (letters, digits, '.', '_', '-')")
    return value


def _network(value: Any) -> IPNetwork:
    text = _str(value)
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a CIDR like 192.168.0.0/16") from None
    raise ValueError(f"{text!r} has host bits set; did you mean {loose}?")


def _address(value: Any) -> IPAddress:
    text = _str(value)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _host_network(value: Any) -> IPNetwork:
    """A workload address: a bare address means a single host (/32 or /128)."""
    text = _str(value)
    if "/" in text:
        return _network(text)
    return ipaddress.ip_network(_address(text))


def _selector(value: Any) -> Selector:
    try:
        return parse_selector(_str(value))
    except SelectorError as exc:
        raise ValueError(str(exc)) from None


def _duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} needs a unit, for example {value}s")
    return parse_duration(_str(value))


def _mac(value: Any) -> str:
    text = _str(value).lower()
    if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", text):
        raise ValueError(f"{value!r} is not a MAC address like ee:ee:ee:ee:ee:ee")
    return text


def _password(value: Any) -> Password:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping like {{file: /etc/tortie/bgp-password}}, got {_describe(value)}")
    if "secretKeyRef" in value:
        raise _FieldError(".secretKeyRef", "Kubernetes secrets are not available to tortie; "
                          "use password: {file: /path/to/password-file}")
    unknown = sorted(set(value) - {"file"})
    if unknown:
        raise _FieldError(f".{unknown[0]}", "tortie does not implement this field (use file)")
    path = value.get("file")
    if not isinstance(path, str) or not path.startswith("/"):
        raise _FieldError(".file", f"expected an absolute path, got {_describe(path)}")
    return Password(Path(path))


def _peer_ip(value: Any) -> tuple[IPAddress, int | None]:
    """Calico's `peerIP`: an address, `IPv4:port` or `[IPv6]:port`."""
    text = _str(value)
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", text) or re.fullmatch(r"([0-9.]+):(\d+)", text)
    host, port = (m.group(1), int(m.group(2))) if m else (text, None)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address, IPv4:port or [IPv6]:port") from None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is not in the range 1 to 65535")
    return addr, port


# --- resources ----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Resource:
    kind: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()

    name: str
    labels: Labels = field(default_factory=Labels)
    origin: Origin | None = field(default=None, compare=False, repr=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def spec_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def metadata_dict(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.labels:
            meta["labels"] = dict(self.labels)
        return meta

    def to_dict(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": self.kind, "metadata": self.metadata_dict(),
                "spec": self.spec_dict()}

    def problem(self, path: str, message: str) -> Problem:
        if self.origin is None:
            return Problem(message, kind=self.kind, name=self.name, path=path)
        return self.origin.problem(self.kind, self.name, path, message)


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
    def _read(cls, spec: _Reader) -> dict[str, Any]:
        return {
            "as_number": spec.get("asNumber", parse_as_number, DEFAULT_AS_NUMBER),
            "node_to_node_mesh_enabled": spec.get("nodeToNodeMeshEnabled", _bool, True),
            "listen_port": spec.get("listenPort", _int(1, 65535), 179),
            "node_mesh_password": spec.get("nodeMeshPassword", _password),
            "node_mesh_max_restart_time": spec.get("nodeMeshMaxRestartTime", _duration),
            "log_severity_screen": spec.get("logSeverityScreen",
                                            _enum("Debug", "Info", "Warning", "Error", "Fatal"), "Info"),
            "prometheus_metrics_enabled": spec.get("prometheusMetricsEnabled", _bool, True),
            "prometheus_metrics_host": spec.get("prometheusMetricsHost", _address_text),
            "prometheus_metrics_port": spec.get("prometheusMetricsPort", _int(1, 65535)),
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


def _address_text(value: Any) -> str:
    return str(_address(value))


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
    def _read(cls, spec: _Reader) -> dict[str, Any]:
        bgp = spec.sub("bgp")
        out = {
            "ipv4_address": bgp.get("ipv4Address", _node_ipv4(bgp)),
            "ipv6_address": bgp.get("ipv6Address", _node_ipv6),
            "as_number": bgp.get("asNumber", parse_as_number),
            "route_reflector_cluster_id": bgp.get("routeReflectorClusterID", _ipv4_address),
            "ipv4_ipip_tunnel_addr": bgp.get("ipv4IPIPTunnelAddr", _ipv4_address),
            "ipv4_vxlan_tunnel_addr": spec.get("ipv4VXLANTunnelAddr", _ipv4_address),
            "vxlan_tunnel_mac_addr": spec.get("vxlanTunnelMACAddr", _mac),
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


def _ipv4_address(value: Any) -> ipaddress.IPv4Address:
    addr = _address(value)
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ValueError(f"{value!r} is not an IPv4 address")
    return addr


def _node_ipv4(reader: _Reader) -> Callable[[Any], ipaddress.IPv4Interface]:
    def conv(value: Any) -> ipaddress.IPv4Interface:
        text = _str(value)
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
    text = _str(value)
    if "/" not in text:
        raise ValueError(f"{text!r} has no prefix length; write address/prefix (e.g. {text}/64)")
    try:
        return ipaddress.IPv6Interface(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv6 address/prefix") from None


@dataclass(frozen=True, kw_only=True)
class BGPPeer(Resource):
    kind: ClassVar[str] = "BGPPeer"
    aliases: ClassVar[tuple[str, ...]] = ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps")

    node: str | None = None
    peer_ip: IPAddress | None = None
    peer_port: int | None = None  # None: 179, or the remote Node's listenPort
    as_number: int | None = None
    node_selector: Selector | None = None
    peer_selector: Selector | None = None
    password: Password | None = None
    keep_original_next_hop: bool = False
    max_restart_time: float | None = None  # seconds
    keepalive_time: float | None = None  # seconds
    ttl_security: int | None = None  # hops (GTSM)
    source_address: str = "UseNodeIP"
    max_prefixes: int | None = None  # tortie's extension: tear the session down above this many

    def applies_to(self, node: Node) -> bool:
        """Whether `node` runs this peering (Calico: `node`, else `nodeSelector`, else every node)."""
        if self.node is not None:
            return self.node == node.name
        if self.node_selector is not None:
            return self.node_selector.matches(node.labels)
        return True

    def selects_peer(self, node: Node) -> bool:
        """Whether `node` is a remote end of this peering (only for `peerSelector` peers)."""
        return self.peer_selector is not None and self.peer_selector.matches(node.labels)

    @classmethod
    def _read(cls, spec: _Reader) -> dict[str, Any]:
        peer = spec.get("peerIP", _peer_ip)
        out = {
            "node": spec.get("node", _name),
            "peer_ip": peer[0] if isinstance(peer, tuple) else peer,
            "peer_port": peer[1] if isinstance(peer, tuple) else None,
            "as_number": spec.get("asNumber", parse_as_number),
            "node_selector": spec.get("nodeSelector", _selector),
            "peer_selector": spec.get("peerSelector", _selector),
            "password": spec.get("password", _password),
            "keep_original_next_hop": spec.get("keepOriginalNextHop", _bool, False),
            "max_restart_time": spec.get("maxRestartTime", _duration),
            "keepalive_time": spec.get("keepaliveTime", _duration),
            "ttl_security": spec.get("ttlSecurity", _int(0, 255)),
            "source_address": spec.get("sourceAddress", _enum("UseNodeIP", "None"), "UseNodeIP"),
            "max_prefixes": spec.get("maxPrefixes", _int(1, 2**32 - 1)),
        }
        if spec.errors:
            return out
        if out["node"] is not None and out["node_selector"] is not None:
            spec.error("nodeSelector", "cannot be set together with node")
        if out["peer_selector"] is not None:
            for key, attr in (("peerIP", "peer_ip"), ("asNumber", "as_number")):
                if out[attr] is not None:
                    spec.error(key, "must be empty when peerSelector is set")
        else:
            if out["peer_ip"] is None:
                spec.error("peerIP", "is required (or peerSelector)")
            if out["as_number"] is None:
                spec.error("asNumber", "is required with peerIP")
        return out

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.node is not None:
            spec["node"] = self.node
        if self.peer_ip is not None:
            ip = str(self.peer_ip)
            if self.peer_port is not None:
                ip = f"[{ip}]:{self.peer_port}" if self.peer_ip.version == 6 else f"{ip}:{self.peer_port}"
            spec["peerIP"] = ip
        if self.as_number is not None:
            spec["asNumber"] = self.as_number
        if self.node_selector is not None:
            spec["nodeSelector"] = self.node_selector.source
        if self.peer_selector is not None:
            spec["peerSelector"] = self.peer_selector.source
        if self.password is not None:
            spec["password"] = {"file": str(self.password.file)}
        if self.keep_original_next_hop:
            spec["keepOriginalNextHop"] = True
        if self.max_restart_time is not None:
            spec["maxRestartTime"] = format_duration(self.max_restart_time)
        if self.keepalive_time is not None:
            spec["keepaliveTime"] = format_duration(self.keepalive_time)
        if self.ttl_security is not None:
            spec["ttlSecurity"] = self.ttl_security
        if self.source_address != "UseNodeIP":
            spec["sourceAddress"] = self.source_address
        if self.max_prefixes is not None:
            spec["maxPrefixes"] = self.max_prefixes
        return spec


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
    def _read(cls, spec: _Reader) -> dict[str, Any]:
        cidr = spec.get("cidr", _network, required=True)
        version = cidr.version if isinstance(cidr, ipaddress.IPv4Network | ipaddress.IPv6Network) else 4
        lo, hi = BLOCK_SIZE_RANGE[version]
        out = {
            "cidr": cidr,
            "block_size": spec.get("blockSize", _int(lo, hi), DEFAULT_BLOCK_SIZE[version]),
            "ipip_mode": spec.get("ipipMode", _enum(*ENCAP_MODES), "Never"),
            "vxlan_mode": spec.get("vxlanMode", _enum(*ENCAP_MODES), "Never"),
            "nat_outgoing": spec.get("natOutgoing", _bool, False),
            "disabled": spec.get("disabled", _bool, False),
            "disable_bgp_export": spec.get("disableBGPExport", _bool, False),
            "node_selector": spec.get("nodeSelector", _selector, ALL),
            "allowed_uses": spec.get("allowedUses", _allowed_uses, ("Workload", "Tunnel")),
            "assignment_mode": spec.get("assignmentMode", _enum("Automatic", "Manual"), "Automatic"),
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
        raise ValueError(f"expected a non-empty list of Workload, Tunnel; got {_describe(value)}")
    uses = []
    for i, item in enumerate(value):
        if item not in ("Workload", "Tunnel"):
            raise _FieldError(f"[{i}]", f"{item!r} is not one of Workload, Tunnel")
        uses.append(item)
    return tuple(uses)


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
    def _read(cls, spec: _Reader) -> dict[str, Any]:
        return {
            "node": spec.get("node", _name, required=True),
            "cidr": spec.get("cidr", _network, required=True),
            "state": spec.get("state", _enum("confirmed", "pending", "pendingDeletion"), "confirmed"),
            "deleted": spec.get("deleted", _bool_or_text, False),
        }

    def spec_dict(self) -> dict[str, Any]:
        # Calico writes `deleted` as a string; so do we, so that its tools read our output too.
        return {"cidr": str(self.cidr), "deleted": "true" if self.deleted else "false", "node": self.node,
                "state": self.state}


def _bool_or_text(value: Any) -> bool:
    if value in ("true", "false"):
        return value == "true"
    return _bool(value)


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
    def _read(cls, spec: _Reader) -> dict[str, Any]:
        return {
            "node": spec.get("node", _name, required=True),
            "interface_name": spec.get("interfaceName", _ifname, required=True),
            "ip_networks": spec.get("ipNetworks", _ip_networks, required=True),
            "mac": spec.get("mac", _mac),
            "orchestrator": spec.get("orchestrator", _str),
            "workload": spec.get("workload", _str),
            "pod": spec.get("pod", _str),
            "endpoint": spec.get("endpoint", _str),
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


def _ifname(value: Any) -> str:
    text = _str(value)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", text):
        raise ValueError(f"{text!r} is not a Linux interface name (1 to 15 letters, digits, '_', '.', '-')")
    return text


def _ip_networks(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of addresses, got {_describe(value)}")
    nets = []
    for i, item in enumerate(value):
        try:
            nets.append(_host_network(item))
        except ValueError as exc:
            raise _FieldError(f"[{i}]", str(exc)) from None
    return tuple(nets)


KINDS: dict[str, type[Resource]] = {
    cls.kind: cls for cls in (BGPConfiguration, Node, BGPPeer, IPPool, BlockAffinity, WorkloadEndpoint)
}


def kind_for(name: str) -> type[Resource]:
    """The resource class for a kind name or calicoctl alias (case-insensitive); KeyError if unknown."""
    lowered = name.lower()
    for cls in KINDS.values():
        if lowered == cls.kind.lower() or lowered in cls.aliases:
            return cls
    raise KeyError(name)


# --- YAML load ----------------------------------------------------------------------------------

_constructor = yaml.constructor.SafeConstructor()
# libyaml's parser when PyYAML was built with it: several times faster, and its nodes carry marks too.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _plain(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    """Node -> plain Python value, recording the line of every field path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _FieldError(path, "mapping keys must be plain strings")
            key = str(_constructor.construct_object(key_node, deep=True))
            sub = f"{path}.{key}" if path else key
            if key in out:
                lines[sub] = key_node.start_mark.line + 1
                raise _FieldError(sub, "duplicate key")
            lines[sub] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, sub, lines)
            lines[sub] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, f"{path}[{i}]", lines) for i, item in enumerate(node.value)]
    return _constructor.construct_object(node, deep=True)


@dataclass(frozen=True, slots=True)
class Loaded:
    resources: tuple[Resource, ...]
    warnings: tuple[Problem, ...]


def load_resources(text: str, source: str = "<string>") -> Loaded:
    """Parse and validate every resource of a multi-document YAML text (each on its own, not together)."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    resources: list[Resource] = []
    try:
        documents = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ValidationError([Problem(f"not valid YAML: {exc.problem or exc}", source, line=line)]) from None
    except yaml.YAMLError as exc:
        raise ValidationError([Problem(f"not valid YAML: {exc}", source)]) from None
    for doc_no, node in enumerate(documents, start=1):
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            continue
        lines: dict[str, int] = {}
        try:
            data = _plain(node, "", lines)
        except _FieldError as exc:
            problems.append(Problem(exc.message, source, doc_no, line=lines.get(exc.path), path=exc.path))
            continue
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind.endswith("List"):
            _load_list(data, Origin(source, doc_no, None, lines), resources, problems, warnings)
            continue
        resource = _load_one(data, Origin(source, doc_no, None, lines), problems, warnings)
        if resource is not None:
            resources.append(resource)
    if problems:
        raise ValidationError(sorted(problems, key=_problem_order))
    return Loaded(tuple(resources), tuple(warnings))


def _problem_order(p: Problem) -> tuple[int, int, int]:
    return (p.document or 0, p.item or 0, p.line or 0)


def _load_list(data: dict[str, Any], origin: Origin, resources: list[Resource], problems: list[Problem],
               warnings: list[Problem]) -> None:
    """A `<Kind>List` as `calicoctl get -o yaml` prints several results: its `items` are resources."""
    kind = data["kind"]
    item_kind = kind[: -len("List")] or None
    if item_kind is not None and item_kind not in KINDS:
        problems.append(origin.problem(kind, None, "kind", f"{kind!r} is not a kind tortie knows "
                                       f"({', '.join(KINDS)}, or their List)"))
        return
    unknown = sorted(set(data) - {"apiVersion", "kind", "items", "metadata"})
    for key in unknown:
        problems.append(origin.problem(kind, None, key, "tortie does not implement this field"))
    items = data.get("items") or []
    if not isinstance(items, list):
        problems.append(origin.problem(kind, None, "items", f"expected a list, got {_describe(items)}"))
        return
    for i, item in enumerate(items):
        prefix = f"items[{i}]"
        sub_lines = {k[len(prefix) + 1:] if k.startswith(prefix + ".") else "": v
                     for k, v in origin.lines.items() if k == prefix or k.startswith(prefix + ".")}
        if isinstance(item, dict):
            item = {"apiVersion": data.get("apiVersion", API_VERSION), **item}
            if item_kind is not None:
                item.setdefault("kind", item_kind)
        sub = Origin(origin.source, origin.document, i + 1, sub_lines)
        if item_kind is not None and isinstance(item, dict) and item.get("kind") != item_kind:
            problems.append(sub.problem(str(item.get("kind")), None, "kind", f"a {kind} holds only {item_kind}"))
            continue
        resource = _load_one(item, sub, problems, warnings)
        if resource is not None:
            resources.append(resource)


def _load_one(data: Any, origin: Origin, problems: list[Problem], warnings: list[Problem]) -> Resource | None:
    if not isinstance(data, dict):
        problems.append(origin.problem("", None, "", f"expected a resource mapping, got {_describe(data)}"))
        return None
    kind = data.get("kind")
    name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
    name = name if isinstance(name, str) else None
    display_kind = kind if isinstance(kind, str) else None
    errors: list[_FieldError] = []
    field_warnings: list[_FieldError] = []
    top = _Reader(data, "", errors, field_warnings)
    api = top.get("apiVersion", _str, required=True)
    if isinstance(api, str) and api != API_VERSION:
        top.error("apiVersion", f"{api!r} is not supported; tortie reads {API_VERSION} resources")
    kind = top.get("kind", _str, required=True)
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if isinstance(kind, str) and cls is None:
        top.error("kind", f"{kind!r} is not a kind tortie knows ({', '.join(KINDS)})")
    if cls is None:
        top.drop(["metadata", "spec", "status"])
        _report(errors, field_warnings, origin, display_kind, name, problems, warnings)
        return None
    meta = top.sub("metadata")
    fields: dict[str, Any] = {}
    if cls is BGPConfiguration:
        fields["name"] = meta.get("name", _name, "default")
        if fields["name"] not in ("default", _MISSING):
            meta.error("name", "only the cluster-wide BGPConfiguration named 'default' is supported")
    elif cls is BlockAffinity:
        fields["name"] = meta.get("name", _name)
    else:
        fields["name"] = meta.get("name", _name, required=True)
    fields["labels"] = meta.get("labels", _labels, Labels())
    if cls is WorkloadEndpoint:
        fields["namespace"] = meta.get("namespace", _name)
    meta.drop(IGNORED_METADATA)
    meta.finish()
    top.drop(["status"])  # observed state a Calico datastore keeps; not configuration
    spec = top.sub("spec")
    fields.update(cls._read(spec))  # type: ignore[attr-defined]
    spec.finish()
    top.finish()
    if cls is BlockAffinity and fields["name"] is None and not errors:
        fields["name"] = block_affinity_name(fields["node"], fields["cidr"])
    if errors:
        _report(errors, field_warnings, origin, cls.kind, name, problems, warnings)
        return None
    _report([], field_warnings, origin, cls.kind, fields["name"], problems, warnings)
    return cls(origin=origin, **fields)


def _report(errors: list[_FieldError], field_warnings: list[_FieldError], origin: Origin, kind: str | None,
            name: str | None, problems: list[Problem], warnings: list[Problem]) -> None:
    for err in errors:
        problems.append(origin.problem(kind or "", name, err.path, err.message))
    for warn in field_warnings:
        warnings.append(origin.problem(kind or "", name, warn.path, warn.message))


def _labels(value: Any) -> Labels:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of label names to values, got {_describe(value)}")
    for key, val in value.items():
        if not isinstance(val, str):
            raise _FieldError(f".{key}", f"label values are strings; quote {val!r}")
        if not re.fullmatch(r"([A-Za-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?", str(key)):
            raise _FieldError(f".{key}", "not a valid label name")
    return Labels(value)


# --- YAML dump ----------------------------------------------------------------------------------

class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(resources: Iterable[Resource]) -> str:
    """Multi-document YAML, keys sorted as calicoctl prints them; valid input for `load_resources`."""
    docs = [r.to_dict() for r in resources]
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                         explicit_start=True) if docs else ""


def list_dict(kind: str, resources: Iterable[Resource], revision: int | None = None) -> dict[str, Any]:
    """The `<Kind>List` wrapper calicoctl prints for several results."""
    meta: dict[str, Any] = {}
    if revision is not None:
        meta["resourceVersion"] = str(revision)
    return {"apiVersion": API_VERSION, "items": [r.to_dict() for r in resources], "kind": f"{kind}List",
            "metadata": meta}


def dump_list_yaml(kind: str, resources: Iterable[Resource], revision: int | None = None) -> str:
    return yaml.dump(list_dict(kind, resources, revision), Dumper=_Dumper, sort_keys=True,
                     default_flow_style=False)


# --- the cluster model --------------------------------------------------------------------------

IMMUTABLE_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "IPPool": (("cidr", "spec.cidr"), ("block_size", "spec.blockSize")),
}


class ClusterModel:
    """Every resource of the cluster, validated together, with the lookups the daemons need.

    Immutable: `apply` and `delete` return a new model. `revision` counts the datastore's writes.
    """

    __slots__ = ("_blocks", "_by_key", "_nodes", "_pools", "_workloads", "resources", "revision", "warnings")

    def __init__(self, resources: Iterable[Resource] = (), revision: int = 0,
                 warnings: Iterable[Problem] = ()) -> None:
        self.resources: tuple[Resource, ...] = tuple(resources)
        self.revision = revision
        self.warnings: tuple[Problem, ...] = tuple(warnings)
        self._by_key: dict[tuple[str, str], Resource] = {}
        problems: list[Problem] = []
        for r in self.resources:
            if r.key in self._by_key:
                problems.append(r.problem("metadata.name", f"a {r.kind} named {r.name!r} is already defined"))
            self._by_key[r.key] = r
        self._nodes = {r.name: r for r in self.resources if isinstance(r, Node)}
        self._pools = tuple(r for r in self.resources if isinstance(r, IPPool))
        self._blocks = tuple(r for r in self.resources if isinstance(r, BlockAffinity))
        self._workloads = tuple(r for r in self.resources if isinstance(r, WorkloadEndpoint))
        problems += self._cross_check()
        if problems:
            raise ValidationError(problems)

    def _cross_check(self) -> list[Problem]:
        problems: list[Problem] = []
        for i, pool in enumerate(self._pools):
            for other in self._pools[:i]:
                if pool.cidr.version == other.cidr.version and pool.cidr.overlaps(other.cidr):
                    problems.append(pool.problem("spec.cidr", f"{pool.cidr} overlaps IPPool {other.name} "
                                                 f"({other.cidr})"))
        seen_addr: dict[ipaddress.IPv4Address, str] = {}
        for node in self._nodes.values():
            if node.ipv4_address is None:
                continue
            if node.ipv4_address.ip in seen_addr:
                problems.append(node.problem("spec.bgp.ipv4Address", f"{node.ipv4_address.ip} is already the "
                                             f"address of Node {seen_addr[node.ipv4_address.ip]}"))
            seen_addr.setdefault(node.ipv4_address.ip, node.name)
        for i, block in enumerate(self._blocks):
            pool = self.pool_for(block.cidr.network_address)
            if pool is None:
                problems.append(block.problem("spec.cidr", f"{block.cidr} is not inside any IPPool"))
            elif block.cidr.prefixlen != pool.block_size or not block.cidr.subnet_of(pool.cidr):  # type: ignore[arg-type]
                problems.append(block.problem("spec.cidr", f"{block.cidr} is not a /{pool.block_size} block "
                                              f"of IPPool {pool.name} ({pool.cidr})"))
            for other in self._blocks[:i]:
                if block.cidr.version == other.cidr.version and block.cidr.overlaps(other.cidr):
                    problems.append(block.problem("spec.cidr", f"{block.cidr} is already affine to node "
                                                  f"{other.node} (BlockAffinity {other.name})"))
        seen_if: dict[tuple[str, str], str] = {}
        for wep in self._workloads:
            key = (wep.node, wep.interface_name)
            if key in seen_if:
                problems.append(wep.problem("spec.interfaceName", f"{wep.interface_name} on {wep.node} is "
                                            f"already used by WorkloadEndpoint {seen_if[key]}"))
            seen_if.setdefault(key, wep.name)
        return problems

    # lookups

    def get(self, kind: str, name: str) -> Resource:
        try:
            return self._by_key[(kind, name)]
        except KeyError:
            raise NotFoundError(kind, name) from None

    def of_kind(self, kind: str) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if r.kind == kind)

    def node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise NotFoundError("Node", name) from None

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(self._nodes.values())

    @property
    def pools(self) -> tuple[IPPool, ...]:
        return self._pools

    def pool(self, name: str) -> IPPool:
        return self.get("IPPool", name)  # type: ignore[return-value]

    def pool_for(self, address: IPAddress | IPNetwork | str) -> IPPool | None:
        """The pool containing an address (or a whole prefix), if any; pools never overlap."""
        if isinstance(address, str):
            address = ipaddress.ip_network(address) if "/" in address else ipaddress.ip_address(address)
        for pool in self._pools:
            if isinstance(address, ipaddress.IPv4Network | ipaddress.IPv6Network):
                if address.version == pool.cidr.version and address.subnet_of(pool.cidr):  # type: ignore[arg-type]
                    return pool
            elif address in pool.cidr:
                return pool
        return None

    @property
    def blocks(self) -> tuple[BlockAffinity, ...]:
        return self._blocks

    def blocks_for(self, node: str | Node) -> tuple[BlockAffinity, ...]:
        name = node.name if isinstance(node, Node) else node
        return tuple(b for b in self._blocks if b.node == name and b.confirmed)

    def node_for_block(self, cidr: IPNetwork) -> str | None:
        for b in self._blocks:
            if b.cidr == cidr and b.confirmed:
                return b.node
        return None

    @property
    def workloads(self) -> tuple[WorkloadEndpoint, ...]:
        return self._workloads

    def workloads_for(self, node: str | Node) -> tuple[WorkloadEndpoint, ...]:
        name = node.name if isinstance(node, Node) else node
        return tuple(w for w in self._workloads if w.node == name)

    @property
    def bgp_config(self) -> BGPConfiguration:
        """The cluster's BGPConfiguration, or Calico's defaults when there is none."""
        found = self._by_key.get(("BGPConfiguration", "default"))
        return found if isinstance(found, BGPConfiguration) else BGPConfiguration()

    def as_number_of(self, node: Node) -> int:
        return node.as_number if node.as_number is not None else self.bgp_config.as_number

    @property
    def peers(self) -> tuple[BGPPeer, ...]:
        return tuple(r for r in self.resources if isinstance(r, BGPPeer))

    def peers_for(self, node: str | Node) -> tuple[BGPPeer, ...]:
        me = node if isinstance(node, Node) else self.node(node)
        return tuple(p for p in self.peers if p.applies_to(me))

    # changes

    def apply(self, incoming: Iterable[Resource]) -> ClusterModel:
        """Create or replace each resource; immutable fields of existing resources must not change."""
        resources = list(self.resources)
        index = {r.key: i for i, r in enumerate(resources)}
        problems: list[Problem] = []
        seen: set[tuple[str, str]] = set()
        for new in incoming:
            if new.key in seen:
                problems.append(new.problem("metadata.name", f"{new.kind} {new.name!r} is given twice"))
            seen.add(new.key)
            at = index.get(new.key)
            if at is None:
                index[new.key] = len(resources)
                resources.append(new)
                continue
            old = resources[at]
            for attr, path in IMMUTABLE_FIELDS.get(new.kind, ()):
                if getattr(old, attr) != getattr(new, attr):
                    problems.append(new.problem(path, f"cannot change from {getattr(old, attr)} to "
                                                f"{getattr(new, attr)}: {path.split('.')[-1]} is immutable "
                                                "once applied (create a new pool instead)"))
            resources[at] = new
        if problems:
            raise ValidationError(problems)
        return ClusterModel(resources, self.revision, self.warnings)

    def delete(self, keys: Iterable[tuple[str, str]], *, missing_ok: bool = False) -> ClusterModel:
        doomed = set(keys)
        if not missing_ok:
            for kind, name in sorted(doomed):
                if (kind, name) not in self._by_key:
                    raise NotFoundError(kind, name)
        return ClusterModel([r for r in self.resources if r.key not in doomed], self.revision, self.warnings)

    def with_revision(self, revision: int) -> ClusterModel:
        return ClusterModel(self.resources, revision, self.warnings)

    def to_yaml(self) -> str:
        return dump_yaml(self.resources)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterModel) and self.resources == other.resources

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ClusterModel(revision={self.revision}, resources={len(self.resources)})"


def load_model(text: str, source: str = "<string>", revision: int = 0) -> ClusterModel:
    """Load, validate each resource and the whole cluster; raises ValidationError with every problem."""
    loaded = load_resources(text, source)
    return ClusterModel(loaded.resources, revision, loaded.warnings)
