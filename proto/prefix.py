"""The one prefix and address form, from the BGP wire to the kernel.

A `Prefix` is a `bytes` value: the IP version (4 or 6), the prefix length, then the whole address
(4 or 16 octets) with the host bits zero. `10.0.0.64/26` is `04 1a 0a 00 00 40`. An `Address` is
the IP version then the address: `10.30.0.206` is `04 0a 1e 00 ce`.

One value serves every stage: bgpd's NLRI decoder makes it (once per prefix), the RIBs key their
tables with it, the route feed carries it as it is (the feed's prefix and address fields are this
form), felixd keys its tables with it and the netlink encoder writes its address octets. Text
appears only where people look (CLI, logs) and at the pyroute2 boundary, through the helpers here.

They are plain `bytes`, not a class: hashing, comparing and slicing them are C operations, a prefix
costs one small object, and a feed frame or a netlink message is built by concatenation.
"""

from __future__ import annotations

import ipaddress
import socket

Prefix = bytes  # version, length, address (4 | 16 octets), host bits zero
Address = bytes  # version, address (4 | 16 octets)

V4, V6 = 4, 6
ADDRESS_OCTETS = {V4: 4, V6: 16}
MAX_LENGTH = {V4: 32, V6: 128}
_AF = {V4: socket.AF_INET, V6: socket.AF_INET6}
_HEAD = {(v, n): bytes((v, n)) for v in (V4, V6) for n in range(MAX_LENGTH[v] + 1)}
_PAD = tuple(b"\0" * n for n in range(17))
# mask of the last address octet a prefix of this length uses partly (0 when it ends on a boundary)
_SPARE = tuple((0xFF >> (n & 7)) if n & 7 else 0 for n in range(129))


class PrefixError(ValueError):
    """Not a prefix or address in this form (or in text)."""


# ---------------------------------------------------------------- parts


def version(p: Prefix | Address) -> int:
    return p[0]


def length(p: Prefix) -> int:
    return p[1]


def packed(p: Prefix) -> bytes:
    """The address octets of a prefix (4 or 16)."""
    return p[2:]


def address_packed(a: Address) -> bytes:
    """The address octets of an address (4 or 16), as the kernel and inet_ntop take them."""
    return a[1:]


def family(p: Prefix | Address) -> int:
    """The socket address family (AF_INET, AF_INET6)."""
    return _AF[p[0]]


# ---------------------------------------------------------------- making them


def make(ver: int, plen: int, raw: bytes) -> Prefix:
    """A prefix from its parts; `raw` may be short (the BGP wire's fewest octets): it is padded, and
    host bits beyond `plen` are cleared (RFC 4271 4.3: their value is irrelevant)."""
    size = ADDRESS_OCTETS.get(ver)
    if size is None:
        raise PrefixError(f"unknown IP version {ver}")
    if plen > size * 8 or len(raw) > size or len(raw) < (plen + 7) >> 3:
        raise PrefixError(f"not a /{plen} IPv{ver} prefix: {raw.hex()}")
    whole, spare = divmod(plen, 8)
    raw = raw[:whole] + bytes((raw[whole] & (0xFF00 >> spare) & 0xFF,)) if spare else raw[:whole]
    return _HEAD[ver, plen] + raw + _PAD[size - len(raw)]


def from_bgp(ver: int, wire: bytes) -> Prefix:
    """From the BGP wire form (length octet, then the fewest octets; trailing bits already zero)."""
    return _HEAD[ver, wire[0]] + wire[1:] + _PAD[ADDRESS_OCTETS[ver] + 1 - len(wire)]


def to_bgp(p: Prefix) -> bytes:
    """The BGP wire form: length octet, then the fewest octets that hold the prefix."""
    return p[1 : 2 + ((p[1] + 7) >> 3)]


def parse(text: str) -> Prefix:
    """`10.0.0.64/26` or `fd00::/64` (strict: host bits must be zero). A bare address is a host
    prefix (/32, /128)."""
    addr, slash, plen_text = text.partition("/")
    ver = V6 if ":" in addr else V4
    try:
        raw = socket.inet_pton(_AF[ver], addr)
    except OSError:
        raise PrefixError(f"not a prefix: {text!r}") from None
    if ver == V4 and socket.inet_ntop(socket.AF_INET, raw) != addr:
        raise PrefixError(f"not a prefix: {text!r}")  # inet_pton is strict already; belt and braces
    top = MAX_LENGTH[ver]
    if slash:
        if not (plen_text.isascii() and plen_text.isdigit()) or int(plen_text) > top:
            raise PrefixError(f"not a prefix: {text!r}")
        plen = int(plen_text)
    else:
        plen = top
    if int.from_bytes(raw, "big") & ((1 << (top - plen)) - 1):
        raise PrefixError(f"{text!r} has host bits set")
    return _HEAD[ver, plen] + raw


def parse_address(text: str) -> Address:
    ver = V6 if ":" in text else V4
    try:
        raw = socket.inet_pton(_AF[ver], text.split("%", 1)[0])
    except OSError:
        raise PrefixError(f"not an address: {text!r}") from None
    return bytes((ver,)) + raw


def from_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network | str) -> Prefix:
    if isinstance(net, str):
        net = ipaddress.ip_network(net)
    return _HEAD[net.version, net.prefixlen] + net.network_address.packed


def from_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> Address:
    if isinstance(addr, str):
        addr = ipaddress.ip_address(addr)
    return bytes((addr.version,)) + addr.packed


def host(a: Address) -> Prefix:
    """The /32 or /128 prefix of an address."""
    return _HEAD[a[0], MAX_LENGTH[a[0]]] + a[1:]


# ---------------------------------------------------------------- text (the edges only)


def address_text(a: Address) -> str:
    """`10.30.0.206`, `fd00::1` (IPv6 as `ipaddress` writes it, never the ::a.b.c.d form)."""
    if a[0] == V4:
        return socket.inet_ntop(socket.AF_INET, a[1:])
    return str(ipaddress.IPv6Address(a[1:]))


def text(p: Prefix) -> str:
    if p[0] == V4:
        return f"{socket.inet_ntop(socket.AF_INET, p[2:])}/{p[1]}"
    return f"{ipaddress.IPv6Address(p[2:])}/{p[1]}"


def network(p: Prefix) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if p[0] == V4:
        return ipaddress.IPv4Network((p[2:], p[1]))
    return ipaddress.IPv6Network((p[2:], p[1]))


def ip(a: Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(a[1:]) if a[0] == V4 else ipaddress.IPv6Address(a[1:])


# ---------------------------------------------------------------- relations


def contains(outer: Prefix, inner: Prefix | Address) -> bool:
    """Whether `inner` (a prefix or an address of the same version) lies inside `outer`."""
    if outer[0] != inner[0]:
        return False
    is_prefix = len(inner) == len(outer)
    inner_len = inner[1] if is_prefix else MAX_LENGTH[inner[0]]
    plen = outer[1]
    if inner_len < plen:
        return False
    raw = inner[2:] if is_prefix else inner[1:]
    whole, spare = divmod(plen, 8)
    if raw[:whole] != outer[2 : 2 + whole]:
        return False
    return not spare or (raw[whole] & (0xFF00 >> spare) & 0xFF) == outer[2 + whole]


def sort_key(p: Prefix | Address) -> tuple[int, bytes, int]:
    """Numeric order, IPv4 before IPv6, shorter prefixes of one address first."""
    if len(p) in (6, 18):
        return (p[0], p[2:], p[1])
    return (p[0], p[1:], MAX_LENGTH.get(p[0], 0))


def valid(p: Prefix) -> bool:
    """Whether `p` is a well-formed prefix (the feed and other decoders check what they receive)."""
    if len(p) < 2:
        return False
    size = ADDRESS_OCTETS.get(p[0])
    if size is None or len(p) != 2 + size or p[1] > size * 8:
        return False
    whole, spare = divmod(p[1], 8)
    if spare and p[2 + whole] & _SPARE[p[1]]:
        return False
    return not any(p[3 + whole :] if spare else p[2 + whole :])


def valid_address(a: Address) -> bool:
    size = ADDRESS_OCTETS.get(a[0]) if a else None
    return size is not None and len(a) == 1 + size
