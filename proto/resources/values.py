"""Small immutable values the resources hold, and the formats Calico writes them in (durations, AS numbers,
names Calico derives)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from proto.digest import sha1, sha1_hex
from proto.record import record

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


DEFAULT_SECRETS_DIR = Path("/etc/tortie/secrets")


@record(frozen=True, slots=True)
class Password:
    """A BGP password: Calico's `secretKeyRef` read from a secrets directory, or tortie's `file`.

    `password: {secretKeyRef: {name: bgp-secrets, key: rr-password}}` is read from
    `<secrets dir>/bgp-secrets/rr-password` (the layout of a Kubernetes secret volume; the directory is
    /etc/tortie/secrets unless tortie-bgpd is given `--secrets-dir`). `password: {file: /path}` names the
    file directly. One trailing newline is dropped. It is read when a session is configured, so it can be
    rotated without editing the cluster.
    """

    file: Path | None = None
    secret_name: str | None = None
    secret_key: str | None = None
    optional: bool = False  # secretKeyRef.optional: a missing secret means no password

    def path(self, secrets_dir: Path = DEFAULT_SECRETS_DIR) -> Path:
        if self.file is not None:
            return self.file
        assert self.secret_name is not None and self.secret_key is not None
        return secrets_dir / self.secret_name / self.secret_key

    def read(self, secrets_dir: Path = DEFAULT_SECRETS_DIR) -> str | None:
        """The password; None only for an optional secret that does not exist. OSError otherwise."""
        try:
            text = self.path(secrets_dir).read_text()
        except FileNotFoundError:
            if self.optional:
                return None
            raise
        return text[:-1] if text.endswith("\n") else text

    def to_dict(self) -> dict[str, Any]:
        if self.file is not None:
            return {"file": str(self.file)}
        ref: dict[str, Any] = {"key": self.secret_key, "name": self.secret_name}
        if self.optional:
            ref["optional"] = True
        return {"secretKeyRef": ref}


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String() form, as calicoctl prints durations: 30s, 1m30s, 2h0m0s, 500ms."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    whole = int(seconds)
    frac = seconds - whole
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    sec_text = f"{sec + frac:.9g}s" if frac else f"{sec}s"
    if h:
        return f"{h}h{m}m{sec_text}"
    if m:
        return f"{m}m{sec_text}"
    return sec_text


# Go's time.ParseDuration, which metav1.Duration uses: an optional sign, then numbers with units; "0" alone
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (`120s`, `2m`, `1m30s`, `500ms`, `1.5h`) in seconds, as Calico's durations are written."""
    original = text
    sign = -1.0 if text.startswith("-") else 1.0
    text = text[1:] if text[:1] in "+-" else text
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"{original!r} is not a duration like 120s, 2m or 1m30s")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_RE.match(text, pos)
        if m is None:
            raise ValueError(f"{original!r} is not a duration like 120s, 2m or 1m30s")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def vtep_mac_for(node_name: str) -> str:
    """The VTEP MAC Calico derives for a node without `vxlanTunnelMACAddr`: 0x66, then SHA-1(name)[0:5]."""
    digest = sha1(node_name.encode())
    return ":".join(f"{b:02x}" for b in b"f" + digest[:5])


def workload_interface_name(workload_id: str, prefix: str = "cali") -> str:
    """Calico's host-side veth name: prefix + the first hex digits of SHA-1(id), 15 characters in all."""
    return prefix + sha1_hex(workload_id.encode())[: 15 - len(prefix)]


def parse_as_number(value: Any) -> int:
    """An AS number as Calico's numorstring.ASNumber accepts it: an integer, the same digits quoted, or
    asdot `'X.Y'` (two 16-bit halves). AS 0 is refused (RFC 7607; a deliberate difference: Calico reads
    0 as "not set")."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an AS number")
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not an AS number (write asdot notation quoted, e.g. '1.10', "
                         "or YAML reads it as a decimal number)")
    if isinstance(value, int):
        asn = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
        asn = int(value)
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+\.[0-9]+", value):
        high, low = (int(p) for p in value.split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise ValueError(f"invalid AS Number format ({value}): each half of asdot notation is 0 to 65535")
        asn = high << 16 | low
    else:
        raise ValueError(f"invalid AS Number format ({value}): an integer or asdot 'X.Y'")
    if not 0 <= asn < 2**32:
        raise ValueError(f"{value!r} is not an AS number (1 to 4294967295)")
    if asn == 0:
        raise ValueError("AS 0 is reserved (RFC 7607) and cannot be used")
    return asn


# --- BGP communities ---------------------------------------------------------------------------

@record(frozen=True, slots=True, order=True)
class Community:
    """A standard (`aa:nn`, 16-bit halves) or large (`aa:nn:mm`, 32-bit parts, RFC 8092) community."""

    parts: tuple[int, ...]

    @property
    def large(self) -> bool:
        return len(self.parts) == 3

    def __str__(self) -> str:
        return ":".join(str(p) for p in self.parts)


def parse_community(value: Any) -> Community:
    """Calico's community value: `aa:nn` (each 0-65535) or `aa:nn:mm` (each 0-4294967295)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a community like '65000:100' or '65000:1:2', got {value!r}")
    m = re.fullmatch(r"([0-9]+):([0-9]+)(?::([0-9]+))?", value)
    if m is None:
        raise ValueError(f"{value!r} is not a community value: use aa:nn (standard) or aa:nn:mm (large)")
    parts = tuple(int(p) for p in m.groups() if p is not None)
    bits = 32 if len(parts) == 3 else 16
    if any(p >= 1 << bits for p in parts):
        raise ValueError(f"invalid community value {value!r}, expected {bits} bit values")
    return Community(parts)


# --- opaque kept values ------------------------------------------------------------------------

class Frozen(Mapping[str, Any]):
    """A frozen, hashable mapping of plain YAML values (mappings and lists frozen too), for the fields
    tortie keeps and writes back without acting on them."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, Any] = {k: freeze(v) for k, v in sorted(pairs)}

    def __getitem__(self, key: str) -> Any:
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
        return f"Frozen({self._items!r})"


def freeze(value: Any) -> Any:
    if isinstance(value, Frozen):
        return value
    if isinstance(value, Mapping):
        return Frozen(value)
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The plain form of a frozen value, for YAML and JSON output."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value
