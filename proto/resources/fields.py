"""Reading the fields of a resource: a reader that reports what it did not read, and the converters from
YAML values to typed ones. A converter raises ValueError (or FieldError for a sub-path) with a message
that names the rule, in Calico's words where Calico has them (libcalico-go `lib/validator/v3`)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from proto.resources import meta
from proto.resources.errors import FieldError
from proto.resources.values import IPAddress, IPNetwork, Password, parse_duration
from proto.selector import Selector, SelectorError, parse_selector

T = TypeVar("T")
MISSING: Any = object()

NOT_IMPLEMENTED = "tortie does not implement this field"


class FieldReader:
    """Reads the fields of one mapping; whatever is neither read nor kept is reported as unsupported."""

    def __init__(self, data: Any, path: str, errors: list[FieldError], warnings: list[FieldError]) -> None:
        self.path = path
        self.errors = errors
        self.warnings = warnings
        self.kept: dict[str, Any] = {}
        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.append(FieldError(path, f"expected a mapping, got {describe(data)}"))
            data = {}
        self.data: dict[str, Any] = dict(data)

    def sub_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, conv: Callable[[Any], T], default: T = None, *,  # type: ignore[assignment]
            required: bool = False) -> T:
        path = self.sub_path(key)
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

    def keep(self, key: str, check: Callable[[Any], object] | None = None) -> None:
        """A field tortie keeps and writes back without acting on it (after `check`, if given)."""
        if key not in self.data:
            return
        raw = self.data[key]
        if raw is None:
            self.data.pop(key)
            return
        if check is not None and self.get(key, check) is MISSING:
            return
        self.data.pop(key, None)
        self.kept[key] = raw

    def sub(self, key: str) -> FieldReader:
        return FieldReader(self.data.pop(key, None), self.sub_path(key), self.errors, self.warnings)

    def items(self, key: str, *, min_items: int = 0, max_items: int | None = None) -> list[FieldReader]:
        """A list of mappings, one reader each (paths `key[i]`)."""
        raw = self.data.pop(key, None)
        path = self.sub_path(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.errors.append(FieldError(path, f"expected a list, got {describe(raw)}"))
            return []
        if len(raw) < min_items:
            self.errors.append(FieldError(path, f"should have at least {min_items} items"))
        if max_items is not None and len(raw) > max_items:
            self.errors.append(FieldError(path, f"must have at most {max_items} items"))
        return [FieldReader(item, f"{path}[{i}]", self.errors, self.warnings) for i, item in enumerate(raw)]

    def drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.data.pop(key, None)

    def error(self, key: str, message: str) -> None:
        self.errors.append(FieldError(self.sub_path(key) if key else self.path, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(FieldError(self.sub_path(key) if key else self.path, message))

    def finish(self) -> None:
        for key in self.data:
            self.errors.append(FieldError(self.sub_path(str(key)), NOT_IMPLEMENTED))


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


def one_of(*choices: str, ignore_case: bool = False) -> Callable[[Any], str]:
    """An enum; with ignore_case the value is returned in the spelling of `choices`."""
    def conv(value: Any) -> str:
        if ignore_case and isinstance(value, str):
            for choice in choices:
                if value.lower() == choice.lower():
                    return choice
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value  # type: ignore[no-any-return]
    return conv


def string_list(conv: Callable[[Any], T], *, max_items: int | None = None) -> Callable[[Any], tuple[T, ...]]:
    def read(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {describe(value)}")
        if max_items is not None and len(value) > max_items:
            raise ValueError(f"must have at most {max_items} items")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(conv(item))
            except FieldError as exc:
                raise FieldError(f"[{i}]{exc.path}", exc.message) from None
            except (ValueError, TypeError) as exc:
                raise FieldError(f"[{i}]", str(exc)) from None
        return tuple(out)
    return read


name = meta.resource_name


def network(value: Any) -> IPNetwork:
    """A strictly masked CIDR, `prefix/length` (Calico's `net` on a field whose CRD format is cidr)."""
    text = string(value)
    if "/" not in text:
        raise ValueError(f"{text!r} is not a CIDR like 192.168.0.0/16 (the prefix length is required)")
    return _masked(text)


def network_or_ip(value: Any) -> IPNetwork:
    """Calico's `net`: a strictly masked CIDR, or an address meaning a /32 or /128."""
    text = string(value)
    if "/" not in text:
        return ipaddress.ip_network(address(text))
    return _masked(text)


def _masked(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a CIDR like 192.168.0.0/16") from None
    raise ValueError(f"{text!r} is not strictly masked (has host bits set); did you mean {loose}?")


def network_v(version: int) -> Callable[[Any], IPNetwork]:
    def conv(value: Any) -> IPNetwork:
        net = network(value)
        if net.version != version:
            raise ValueError(f"{value!r} is not an IPv{version} CIDR")
        return net
    return conv


def address(value: Any) -> IPAddress:
    text = string(value)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def address_text(value: Any) -> str:
    return str(address(value))


def ipv4_address(value: Any) -> ipaddress.IPv4Address:
    addr = address(value)
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ValueError(f"{value!r} is not an IPv4 address")
    return addr


def ipv6_address(value: Any) -> ipaddress.IPv6Address:
    addr = address(value)
    if not isinstance(addr, ipaddress.IPv6Address):
        raise ValueError(f"{value!r} is not an IPv6 address")
    return addr


def cidr_or_ip(value: Any) -> str:
    """Calico's loose `cidr`: an address or address/length, host bits allowed; kept as written."""
    text = string(value)
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR") from None
    return text


def selector(value: Any) -> Selector:
    try:
        return parse_selector(string(value))
    except SelectorError as exc:
        raise ValueError(str(exc)) from None


def duration(lo: float | None = None, hi: float | None = None) -> Callable[[Any], float]:
    """A Go duration string (`120s`, `2m`, `1m30s`), as metav1.Duration reads it, in seconds."""
    def conv(value: Any) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"{value!r} needs a unit, for example {value}s")
        seconds = parse_duration(string(value))
        if lo is not None and seconds < lo:
            raise ValueError(f"{value} is less than {lo:g}s")
        if hi is not None and seconds > hi:
            raise ValueError(f"{value} is more than {hi:g}s")
        return seconds
    return conv


_MAC_FORMS = (
    re.compile(r"([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})"
               r"[:-]([0-9a-fA-F]{2})"),
    re.compile(r"([0-9a-fA-F]{2})([0-9a-fA-F]{2})\.([0-9a-fA-F]{2})([0-9a-fA-F]{2})\.([0-9a-fA-F]{2})"
               r"([0-9a-fA-F]{2})"),
)


def mac(value: Any) -> str:
    """A 48-bit MAC in any of Go's net.ParseMAC forms (`aa:bb:..`, `aa-bb-..`, `aabb.ccdd.eeff`);
    stored as lowercase colon-separated."""
    text = string(value)
    for form in _MAC_FORMS:
        m = form.fullmatch(text)
        if m and (form is _MAC_FORMS[1] or len({text[2], text[5], text[8], text[11], text[14]}) == 1):
            return ":".join(g.lower() for g in m.groups())
    raise ValueError(f"{value!r} is not a MAC address like ee:ee:ee:ee:ee:ee")


_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def password(value: Any) -> Password:
    """Calico's BGPPassword (`secretKeyRef: {name, key, optional}`), or tortie's `{file: /path}`."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping like {secretKeyRef: {name: bgp-secrets, key: password}} "
                         f"or {{file: /etc/tortie/bgp-password}}, got {describe(value)}")
    unknown = sorted(set(value) - {"file", "secretKeyRef"})
    if unknown:
        raise FieldError(f".{unknown[0]}", NOT_IMPLEMENTED + " (secretKeyRef or file)")
    if "file" in value and "secretKeyRef" in value:
        raise FieldError(".file", "give either secretKeyRef or file, not both")
    if "file" in value:
        path = value["file"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise FieldError(".file", f"expected an absolute path, got {describe(path)}")
        return Password(file=Path(path))
    ref = value.get("secretKeyRef")
    if not isinstance(ref, dict):
        raise FieldError(".secretKeyRef", f"expected a mapping with name and key, got {describe(ref)}")
    for k in sorted(set(ref) - {"name", "key", "optional"}):
        raise FieldError(f".secretKeyRef.{k}", NOT_IMPLEMENTED + " (name, key, optional)")
    secret = ref.get("name")
    if not isinstance(secret, str) or not secret:
        raise FieldError(".secretKeyRef.name", "is required (the secret's name)")
    errs = meta.subdomain_errors(secret)
    if errs:
        raise FieldError(".secretKeyRef.name", "; ".join(errs))
    key = ref.get("key")
    if not isinstance(key, str) or not key:
        raise FieldError(".secretKeyRef.key", "is required (the key inside the secret)")
    if len(key) > 253 or not _SECRET_KEY.fullmatch(key) or key in (".", ".."):
        raise FieldError(".secretKeyRef.key", "a valid config key must consist of alphanumeric characters, "
                         "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                         "validation is '[-._a-zA-Z0-9]+')")
    optional = ref.get("optional", False)
    if not isinstance(optional, bool):
        raise FieldError(".secretKeyRef.optional", f"expected true or false, got {describe(optional)}")
    return Password(secret_name=secret, secret_key=key, optional=optional)


_IPV4_PORT = re.compile(r"(\d+).(\d+).(\d+).(\d+):(\d+)")
_IPV6_PORT = re.compile(r"\[[0-9a-fA-F:.]+\]:(\d+)")


def peer_ip(value: Any) -> tuple[IPAddress, int | None]:
    """Calico's `peerIP` (its IP:port rule): an address, `IPv4:port` or `[IPv6]:port`, port 1-65535."""
    text = string(value)
    host, port = text, None
    if _IPV4_PORT.fullmatch(text) or _IPV6_PORT.fullmatch(text):
        host, _, port_text = text.rpartition(":")
        host = host.strip("[]")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"{text!r}: port {port} is not in the range 1 to 65535")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address, <IPv4>:<port> or [<IPv6>]:<port>") from None
    return addr, port


def bool_or_text(value: Any) -> bool:
    """A boolean, or the strings "true"/"false" that older Calico versions wrote."""
    if value in ("true", "false"):
        return value == "true"
    return boolean(value)


_IFNAME = re.compile(r"[a-zA-Z0-9_.-]{1,15}")


def ifname(value: Any) -> str:
    """Calico's `interface` rule: 1 to 15 letters, digits, '_', '.', '-'."""
    text = string(value)
    if not _IFNAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a Linux interface name (1 to 15 letters, digits, '_', '.', '-')")
    return text


labels = meta.labels
