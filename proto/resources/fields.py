"""Reading the fields of a resource: a reader that reports what it did not read, and the converters from
YAML values to typed ones. A converter raises ValueError (or FieldError for a sub-path) with a message
that names the rule."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from proto.resources.errors import FieldError
from proto.resources.values import IPAddress, IPNetwork, Labels, Password, parse_duration
from proto.selector import Selector, SelectorError, parse_selector

T = TypeVar("T")
MISSING: Any = object()


class FieldReader:
    """Reads the fields of one mapping; whatever is not read is reported as unsupported."""

    def __init__(self, data: Any, path: str, errors: list[FieldError], warnings: list[FieldError]) -> None:
        self.path = path
        self.errors = errors
        self.warnings = warnings
        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.append(FieldError(path, f"expected a mapping, got {describe(data)}"))
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
                self.errors.append(FieldError(path, "is required"))
                return MISSING
            return default
        try:
            return conv(raw)
        except FieldError as exc:
            self.errors.append(FieldError(f"{path}{exc.path}", exc.message))
        except (ValueError, TypeError) as exc:
            self.errors.append(FieldError(path, str(exc)))
        return MISSING

    def sub(self, key: str) -> FieldReader:
        return FieldReader(self.data.pop(key, None), self._sub_path(key), self.errors, self.warnings)

    def drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.data.pop(key, None)

    def error(self, key: str, message: str) -> None:
        self.errors.append(FieldError(self._sub_path(key) if key else self.path, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(FieldError(self._sub_path(key), message))

    def finish(self) -> None:
        for key in self.data:
            self.errors.append(FieldError(self._sub_path(str(key)), "tortie does not implement this field"))


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def integer(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {describe(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"{value} is not in the range {lo} to {hi}")
        return value
    return conv


def one_of(*choices: str) -> Callable[[Any], str]:
    def conv(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return conv


def name(value: Any) -> str:
    value = string(value)
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?", value):
        raise ValueError(f"{value!r} is not a valid name (letters, digits, '.', '_', '-')")
    return value


def network(value: Any) -> IPNetwork:
    text = string(value)
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a CIDR like 192.168.0.0/16") from None
    raise ValueError(f"{text!r} has host bits set; did you mean {loose}?")


def address(value: Any) -> IPAddress:
    text = string(value)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def host_network(value: Any) -> IPNetwork:
    """A workload address: a bare address means a single host (/32 or /128)."""
    text = string(value)
    if "/" in text:
        return network(text)
    return ipaddress.ip_network(address(text))


def selector(value: Any) -> Selector:
    try:
        return parse_selector(string(value))
    except SelectorError as exc:
        raise ValueError(str(exc)) from None


def duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} needs a unit, for example {value}s")
    return parse_duration(string(value))


def mac(value: Any) -> str:
    text = string(value).lower()
    if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", text):
        raise ValueError(f"{value!r} is not a MAC address like ee:ee:ee:ee:ee:ee")
    return text


def password(value: Any) -> Password:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping like {{file: /etc/tortie/bgp-password}}, got {describe(value)}")
    if "secretKeyRef" in value:
        raise FieldError(".secretKeyRef", "Kubernetes secrets are not available to tortie; "
                          "use password: {file: /path/to/password-file}")
    unknown = sorted(set(value) - {"file"})
    if unknown:
        raise FieldError(f".{unknown[0]}", "tortie does not implement this field (use file)")
    path = value.get("file")
    if not isinstance(path, str) or not path.startswith("/"):
        raise FieldError(".file", f"expected an absolute path, got {describe(path)}")
    return Password(Path(path))


def peer_ip(value: Any) -> tuple[IPAddress, int | None]:
    """Calico's `peerIP`: an address, `IPv4:port` or `[IPv6]:port`."""
    text = string(value)
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", text) or re.fullmatch(r"([0-9.]+):(\d+)", text)
    host, port = (m.group(1), int(m.group(2))) if m else (text, None)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address, IPv4:port or [IPv6]:port") from None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is not in the range 1 to 65535")
    return addr, port


def address_text(value: Any) -> str:
    return str(address(value))


def ipv4_address(value: Any) -> ipaddress.IPv4Address:
    addr = address(value)
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ValueError(f"{value!r} is not an IPv4 address")
    return addr


def bool_or_text(value: Any) -> bool:
    if value in ("true", "false"):
        return value == "true"
    return boolean(value)


def ifname(value: Any) -> str:
    text = string(value)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", text):
        raise ValueError(f"{text!r} is not a Linux interface name (1 to 15 letters, digits, '_', '.', '-')")
    return text


def labels(value: Any) -> Labels:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of label names to values, got {describe(value)}")
    for key, val in value.items():
        if not isinstance(val, str):
            raise FieldError(f".{key}", f"label values are strings; quote {val!r}")
        if not re.fullmatch(r"([A-Za-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?", str(key)):
            raise FieldError(f".{key}", "not a valid label name")
    return Labels(value)


