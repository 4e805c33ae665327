"""Wire-form prefixes and `ipaddress` networks, both ways.

A wire-form prefix is one length octet followed by ceil(length / 8) address octets, the unused
trailing bits zero. RFC 4271 section 4.3 says the trailing bits of a received prefix are
irrelevant, so the decoders normalise them to zero rather than reject the message: the same route
then always has the same key. With ADD-PATH (RFC 7911) the 4-octet path identifier comes first.
"""

from __future__ import annotations

import ipaddress

from proto.bgp.constants import AFI

IPv4Network = ipaddress.IPv4Network
IPv6Network = ipaddress.IPv6Network
Network = IPv4Network | IPv6Network

MAX_LENGTH = {AFI.IPV4: 32, AFI.IPV6: 128}
ADDRESS_OCTETS = {AFI.IPV4: 4, AFI.IPV6: 16}


def octets_for(length: int) -> int:
    """How many address octets a prefix of `length` bits occupies on the wire."""
    return (length + 7) >> 3


def normalise(prefix: bytes) -> bytes:
    """Zero the bits beyond the prefix length (the wire form without path identifier)."""
    length = prefix[0]
    spare = length & 7
    if not spare or not prefix[-1] & (0xFF >> spare):
        return prefix
    return prefix[:-1] + bytes((prefix[-1] & (0xFF00 >> spare) & 0xFF,))


def prefix_from_network(network: Network | str, path_id: int | None = None) -> bytes:
    """The wire form of `network`, preceded by `path_id` (4 octets) when one is given."""
    if isinstance(network, str):
        network = ipaddress.ip_network(network)
    length = network.prefixlen
    wire = bytes((length,)) + network.network_address.packed[: octets_for(length)]
    if path_id is None:
        return wire
    return path_id.to_bytes(4, "big") + wire


def network_from_prefix(afi: int, key: bytes, add_path: bool = False) -> Network:
    """The network a wire-form prefix (optionally with a leading path identifier) stands for."""
    if add_path:
        key = key[4:]
    length = key[0]
    size = ADDRESS_OCTETS[AFI(afi)]
    if length > size * 8 or len(key) != 1 + octets_for(length):
        raise ValueError(f"not a wire-form prefix for AFI {afi}: {key.hex()}")
    address = key[1:].ljust(size, b"\0")
    if afi == AFI.IPV4:
        return IPv4Network((address, length), strict=False)
    return IPv6Network((address, length), strict=False)


def split_path_id(entry: bytes) -> tuple[int, bytes]:
    """(path identifier, wire-form prefix) of an ADD-PATH entry."""
    return int.from_bytes(entry[:4], "big"), entry[4:]


def join_path_id(path_id: int, prefix: bytes) -> bytes:
    """The ADD-PATH entry for `prefix` with `path_id`."""
    return path_id.to_bytes(4, "big") + prefix


def strip_path_id(entry: bytes) -> bytes:
    return entry[4:]
