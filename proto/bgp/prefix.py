"""BGP's view of prefixes: the wire form of NLRI entries, and `proto.prefix` values both ways.

On the wire a prefix is one length octet followed by ceil(length / 8) address octets. Inside tortie
a prefix is a `proto.prefix` value (version, length, the whole address), made once by the NLRI
decoder. RFC 4271 section 4.3 says the trailing bits of a received prefix are irrelevant, so the
decoders clear them rather than reject the message: the same route then always has the same key.
With ADD-PATH (RFC 7911) the 4-octet path identifier comes first, in front of the value.
"""

from __future__ import annotations

import ipaddress

from proto import prefix as pf
from proto.bgp.constants import AFI
from proto.bgp.nlri import SHAPES

IPv4Network = ipaddress.IPv4Network
IPv6Network = ipaddress.IPv6Network
Network = IPv4Network | IPv6Network

# by AFI, from the NLRI codec's shapes (the family table's source for the same facts)
MAX_LENGTH = {AFI(afi): shape.max_length for afi, shape in SHAPES.items()}
ADDRESS_OCTETS = {AFI(afi): shape.address_octets for afi, shape in SHAPES.items()}
VERSION = {AFI(afi): shape.version for afi, shape in SHAPES.items()}


def octets_for(length: int) -> int:
    """How many address octets a prefix of `length` bits occupies on the wire."""
    return (length + 7) >> 3


def prefix_from_network(network: Network | str, path_id: int | None = None) -> bytes:
    """The `proto.prefix` value of `network`, preceded by `path_id` (4 octets) when one is given."""
    value = pf.from_network(network)
    if path_id is None:
        return value
    return path_id.to_bytes(4, "big") + value


def network_from_prefix(afi: int, key: bytes, add_path: bool = False) -> Network:
    """The network a value (optionally with a leading path identifier) stands for."""
    if add_path:
        key = key[4:]
    if key[:1] != bytes((VERSION[AFI(afi)],)) or not pf.valid(key):
        raise ValueError(f"not a prefix for AFI {afi}: {key.hex()}")
    return pf.network(key)


def split_path_id(entry: bytes) -> tuple[int, bytes]:
    """(path identifier, prefix) of an ADD-PATH entry."""
    return int.from_bytes(entry[:4], "big"), entry[4:]


def join_path_id(path_id: int, prefix: bytes) -> bytes:
    """The ADD-PATH entry for `prefix` with `path_id`."""
    return path_id.to_bytes(4, "big") + prefix


def strip_path_id(entry: bytes) -> bytes:
    return entry[4:]
