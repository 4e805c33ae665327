"""Calico's IP_AUTODETECTION_METHOD rules, as a pure choice over the host's interfaces.

Facts from calico node/pkg/lifecycle/startup/autodetection (autodetection_methods.go, filtered.go,
interfaces.go, reachaddr.go, autodetection_linux.go):
- `first-found` (the default): the first global unicast address on any interface not matching the
  default exclusions (docker, cbr, dummy, podman, virbr, lxcbr, veth, lo, br-, cali, tunl, flannel,
  kube-ipvs, cni, vxlan.calico, vxlan-v6.calico, wireguard.cali, wg-v6.cali, nodelocaldns);
- `interface=REGEX[,REGEX]`: only interfaces whose name matches one of the regexes;
- `skip-interface=REGEX[,REGEX]`: the default exclusions plus these;
- `cidr=CIDR[,CIDR]`: the first address inside one of the CIDRs (no exclusions);
- `can-reach=DEST`: the source address the kernel picks for DEST (a UDP socket is connected, which
  sends nothing), with the prefix length of the interface that holds it.
Interfaces are walked in reverse index order (Calico keeps that order "to maintain behavior with older
versions"), regexes match anywhere in the name (Go's MatchString), and the prefix length comes with the
address: it is what CrossSubnet decides by.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence

from proto.record import record
from proto.resources import IPAddress, IPInterface

DEFAULT_EXCLUDE = (
    "^docker.*", "^cbr.*", "^dummy.*", "^podman.*", "^virbr.*", "^lxcbr.*", "^veth.*", "^lo", "^br-.*",
    "^cali.*", "^tunl.*", "^flannel.*", "^kube-ipvs.*", "^cni.*", r"^vxlan\.calico.*", r"^vxlan-v6\.calico.*",
    r"^wireguard\.cali.*", r"^wg-v6\.cali.*", "^nodelocaldns.*",
)
METHODS = ("first-found", "interface=", "skip-interface=", "cidr=", "can-reach=")


class AutodetectError(ValueError):
    """The method is malformed, or no address fits it."""


@record(frozen=True, slots=True)
class HostInterface:
    name: str
    index: int
    addresses: tuple[IPInterface, ...]


def _split(text: str) -> list[str]:
    return [p for p in re.split(r"\s*,\s*", text.strip()) if p]


def _regex(parts: Sequence[str], method: str) -> re.Pattern[str]:
    try:
        return re.compile("(" + ")|(".join(parts) + ")")
    except re.error as exc:
        raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r}: bad regular expression: {exc}") from None


def validate(method: str) -> str:
    """The method, checked; AutodetectError naming what is wrong."""
    method = method.strip() or "first-found"
    if method == "first-found":
        return method
    for prefix in ("interface=", "skip-interface="):
        if method.startswith(prefix):
            parts = _split(method[len(prefix):])
            if not parts:
                raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r}: no interface regex given")
            _regex(parts, method)
            return method
    if method.startswith("cidr="):
        parts = _split(method[len("cidr="):])
        if not parts:
            raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r}: no CIDR given")
        for p in parts:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r}: {p!r} is not a CIDR") from None
        return method
    if method.startswith("can-reach="):
        if not method[len("can-reach="):].strip():
            raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r}: no destination given")
        return method
    raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r} is not one of first-found, interface=REGEX, "
                          "skip-interface=REGEX, cidr=CIDR, can-reach=DEST")


def _global_unicast(addr: IPAddress) -> bool:
    # Go's net.IP.IsGlobalUnicast: private ranges count, link-local / loopback / multicast do not
    return not (addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified
                or addr == ipaddress.IPv4Address("255.255.255.255"))


def _first(interfaces: Sequence[HostInterface], version: int, include: re.Pattern[str] | None,
           exclude: re.Pattern[str] | None, cidrs: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
           ) -> IPInterface | None:
    for iface in sorted(interfaces, key=lambda i: i.index, reverse=True):
        if include is not None and not include.search(iface.name):
            continue
        if exclude is not None and exclude.search(iface.name):
            continue
        for addr in iface.addresses:
            if addr.version != version or not _global_unicast(addr.ip):
                continue
            if cidrs and not any(addr.ip in c for c in cidrs if c.version == version):
                continue
            return addr
    return None


def choose(method: str, interfaces: Sequence[HostInterface], version: int = 4,
           reach: Callable[[str, int], IPAddress | None] | None = None) -> IPInterface:
    """The address (with its prefix length) `method` picks; AutodetectError when none fits."""
    method = validate(method)
    found: IPInterface | None
    if method == "first-found":
        found = _first(interfaces, version, None, _regex(DEFAULT_EXCLUDE, method))
    elif method.startswith("interface="):
        found = _first(interfaces, version, _regex(_split(method[len("interface="):]), method), None)
    elif method.startswith("skip-interface="):
        found = _first(interfaces, version, None,
                       _regex([*DEFAULT_EXCLUDE, *_split(method[len("skip-interface="):])], method))
    elif method.startswith("cidr="):
        cidrs = [ipaddress.ip_network(p, strict=False) for p in _split(method[len("cidr="):])]
        found = _first(interfaces, version, None, None, cidrs)
    else:
        dest = method[len("can-reach="):].strip()
        source = (reach or reach_source)(dest, version)
        found = None
        if source is not None:
            for iface in interfaces:
                found = next((a for a in iface.addresses if a.ip == source), None)
                if found is not None:
                    break
        if found is None:
            raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r}: the source address for {dest} "
                                  f"({source}) is not on any interface")
    if found is None:
        raise AutodetectError(f"IP_AUTODETECTION_METHOD {method!r}: no IPv{version} address found on "
                              f"the host's interfaces ({', '.join(i.name for i in interfaces) or 'none'})")
    return found


def reach_source(dest: str, version: int) -> IPAddress | None:
    """The local address the kernel would use towards `dest` (connecting UDP sends no packet)."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    try:
        infos = socket.getaddrinfo(dest, 80, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise AutodetectError(f"can-reach={dest}: cannot resolve: {exc}") from None
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect(infos[0][4])
        except OSError as exc:
            raise AutodetectError(f"can-reach={dest}: {exc.strerror}") from None
        return ipaddress.ip_address(s.getsockname()[0])


def read_interfaces() -> list[HostInterface]:
    """This network namespace's interfaces and addresses (pyroute2; call it off the event loop)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        addrs: dict[int, list[IPInterface]] = {i: [] for i in names}
        for a in ipr.get_addr():
            text = a.get_attr("IFA_ADDRESS")
            if text is None or a["index"] not in addrs:
                continue
            addrs[a["index"]].append(ipaddress.ip_interface(f"{text}/{a['prefixlen']}"))
    return [HostInterface(names[i], i, tuple(addrs[i])) for i in sorted(names)]
