"""Small immutable values the resources hold, and the formats Calico writes them in (durations, AS numbers,
names Calico derives)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


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


