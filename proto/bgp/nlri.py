"""NLRI lists (withdrawn routes, NLRI, the prefixes inside MP_REACH / MP_UNREACH): the construct
specification and the hand-written split that decodes them at millions of prefixes a second.

Both return `proto.prefix` values (version, length, the whole address; ADD-PATH entries keep their
4-octet path identifier in front), made here once per prefix and used as they are by the RIBs, the
route feed and felixd. Both clear the trailing bits beyond the prefix length (RFC 4271 section 4.3:
their value is irrelevant), so one route always has one key. A prefix longer than the address, or a
list that ends inside an entry, raises `NlriError`; the caller turns it into the NOTIFICATION its
field calls for. `join` is the way back to the wire.

The specification (`entry_struct`, `split_spec`) imports construct when first used: a running
speaker splits with the hand-written code only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, NamedTuple

from proto import prefix as pf
from proto.bgp.constants import AFI


class NlriError(ValueError):
    """A syntactically invalid NLRI list: `kind` is "length" (prefix too long) or "truncated"."""

    def __init__(self, kind: str, offset: int, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.offset = offset


# ---------------------------------------------------------------- the specification


@functools.cache
def entry_struct(max_bits: int, add_path: bool) -> Any:
    """One NLRI entry: [path identifier], length in bits, the fewest octets that hold it."""
    from construct import Bytes, Check, Int8ub, Int32ub, Struct, this

    fields = [
        "length" / Int8ub,
        Check(this.length <= max_bits),
        "address" / Bytes((this.length + 7) // 8),
    ]
    if add_path:
        fields.insert(0, "path_id" / Int32ub)
    return Struct(*fields)


_FAR = 1 << 30  # an octet count that cannot fit: sends too-long prefix lengths to the error branch


class NlriShape(NamedTuple):
    """What the NLRI codec knows about an address family (an AFI), with the per-length tables its
    fast path indexes. The family table (`proto.bgp.family`) takes version and sizes from here."""

    afi: int
    version: int  # the proto.prefix version
    address_octets: int
    max_length: int
    octets: tuple[int, ...]  # per length octet: address octets on the wire (_FAR when too long)
    heads: tuple[bytes, ...]  # per length: the value's first two octets (version, length)
    pads: tuple[bytes, ...]  # per length: the zero octets that complete the address

    def __repr__(self) -> str:
        return f"NlriShape(afi={self.afi}, version={self.version})"

    @classmethod
    def of(cls, afi: int, version: int) -> NlriShape:
        size = pf.ADDRESS_OCTETS[version]
        bits = size * 8
        return cls(
            afi,
            version,
            size,
            bits,
            tuple((p + 7) >> 3 if p <= bits else _FAR for p in range(256)),
            tuple(bytes((version, p)) for p in range(256)),
            tuple(b"\0" * (size - ((p + 7) >> 3)) if p <= bits else b"" for p in range(256)),
        )


SHAPES: dict[int, NlriShape] = {AFI.IPV4: NlriShape.of(AFI.IPV4, pf.V4), AFI.IPV6: NlriShape.of(AFI.IPV6, pf.V6)}
_SHAPES = {int(afi): found for afi, found in SHAPES.items()}


def shape(afi: int) -> NlriShape:
    found = SHAPES.get(afi)
    if found is None:
        raise ValueError(f"unsupported AFI {afi}")
    return found


def _entry(parsed: object, version: int, add_path: bool) -> bytes:
    value = pf.make(version, parsed.length, parsed.address)  # type: ignore[attr-defined]
    if add_path:
        return parsed.path_id.to_bytes(4, "big") + value  # type: ignore[attr-defined]
    return value


def split_spec(data: bytes, afi: int, add_path: bool = False) -> list[bytes]:
    """Decode an NLRI list with the construct specification (slow, the reference)."""
    from construct import ConstructError, StreamError
    from construct.core import CheckError

    family = shape(afi)
    max_bits = family.max_length
    version = family.version
    entry = entry_struct(max_bits, add_path)
    out: list[bytes] = []
    offset = 0
    while offset < len(data):
        try:
            parsed = entry.parse(data[offset:])
        except CheckError as exc:
            raise NlriError("length", offset, f"prefix length exceeds {max_bits} bits") from exc
        except (StreamError, ConstructError) as exc:
            raise NlriError("truncated", offset, "NLRI list ends inside a prefix") from exc
        out.append(_entry(parsed, version, add_path))
        offset += (5 if add_path else 1) + len(parsed.address)
    return out


# ---------------------------------------------------------------- the fast path

# bits of the last address octet that lie beyond the prefix length (0: nothing to check)
_SPARE = tuple((0xFF >> (p & 7)) if p & 7 else 0 for p in range(256))
# per spare mask, the octet values whose spare bits are all zero (for bytes.translate deletion)
_CLEAN = tuple(bytes(v for v in range(256) if not v & s) for s in range(256))
_LENGTH_OCTET = tuple(bytes((p,)) for p in range(256))


def _failure(data: bytes, max_bits: int, add_path: bool) -> NlriError:
    """Walk the list carefully to say where and how it is malformed (only on the error path)."""
    head = 5 if add_path else 1
    offset = 0
    while offset < len(data):
        if offset + head > len(data):
            break
        length = data[offset + head - 1]
        if length > max_bits:
            return NlriError("length", offset, f"prefix length {length} exceeds {max_bits} bits")
        end = offset + head + ((length + 7) >> 3)
        if end > len(data):
            break
        offset = end
    return NlriError("truncated", offset, "NLRI list ends inside a prefix")


def _uniform(data: bytes, size: int, max_bits: int, head: int, heads: tuple[bytes, ...],
             pads: tuple[bytes, ...]) -> list[bytes] | None:
    """The whole list when every entry has the same length and clean trailing bits, else None.

    Bulk UPDATEs usually carry prefixes of one length (Calico's /26 blocks): then the length octets
    sit at a fixed stride and C-level strided slices check them all at once.
    """
    plen = data[head - 1]
    if plen > max_bits:
        return None
    width = head + ((plen + 7) >> 3)
    count, rest = divmod(size, width)
    if rest or data[head - 1 :: width] != _LENGTH_OCTET[plen] * count:
        return None
    spare = _SPARE[plen]
    if spare and data[width - 1 :: width].translate(None, _CLEAN[spare]):
        return None
    hd, pad = heads[plen], pads[plen]
    if head == 1:
        if pad:
            return [hd + data[k + 1 : k + width] + pad for k in range(0, size, width)]
        return [hd + data[k + 1 : k + width] for k in range(0, size, width)]
    return [data[k : k + 4] + hd + data[k + 5 : k + width] + pad for k in range(0, size, width)]


def split(data: bytes, afi: int, add_path: bool = False) -> list[bytes]:
    """Split an NLRI list into `proto.prefix` values: the hot loop, equal to `split_spec`."""
    family = _SHAPES.get(afi)  # by plain int: hashing an IntEnum member costs more than the split
    if family is None:
        raise ValueError(f"unsupported AFI {afi}")
    size = len(data)
    if not size:
        return []
    max_bits = family.max_length
    heads = family.heads
    pads = family.pads
    head = 5 if add_path else 1
    octets = family.octets
    spare = _SPARE
    if size > head:
        plen = data[head - 1]
        if head + octets[plen] == size:  # a single entry, the common case of small UPDATEs
            last = data[-1]
            if last & spare[plen]:
                body = data[head:-1] + _LENGTH_OCTET[last & ~spare[plen] & 0xFF]
            else:
                body = data[head:]
            return [data[: head - 1] + heads[plen] + body + pads[plen]]
        if size >= 8 * head:
            same = _uniform(data, size, max_bits, head, heads, pads)
            if same is not None:
                return same
    out: list[bytes] = []
    append = out.append
    i = 0
    # Any malformation sends an index past the end (too-long lengths map to _FAR octets), so the
    # loop needs no bounds checks of its own: IndexError is the error branch.
    try:
        if add_path:
            while i < size:
                plen = data[i + 4]
                end = i + 5 + octets[plen]
                last = data[end - 1]
                if last & spare[plen]:
                    append(data[i : i + 4] + heads[plen] + data[i + 5 : end - 1]
                           + _LENGTH_OCTET[last & ~spare[plen] & 0xFF] + pads[plen])
                else:
                    append(data[i : i + 4] + heads[plen] + data[i + 5 : end] + pads[plen])
                i = end
        else:
            while i < size:
                plen = data[i]
                end = i + 1 + octets[plen]
                last = data[end - 1]
                if last & spare[plen]:
                    append(heads[plen] + data[i + 1 : end - 1] + _LENGTH_OCTET[last & ~spare[plen] & 0xFF]
                           + pads[plen])
                else:
                    append(heads[plen] + data[i + 1 : end] + pads[plen])
                i = end
    except IndexError:
        raise _failure(data, max_bits, add_path) from None
    return out


def entry_wire(entry: bytes) -> bytes:
    """One entry (a `proto.prefix` value, with its ADD-PATH identifier in front or not) as it goes on
    the wire. The value's size says which: 6 or 18 octets, or 4 more with an identifier."""
    if len(entry) in (6, 18):
        return entry[1 : 2 + ((entry[1] + 7) >> 3)]
    return entry[:4] + entry[5 : 6 + ((entry[5] + 7) >> 3)]


def uniform_wire(prefixes: list[bytes]) -> tuple[bytes, int] | None:
    """The wire form of a list whose entries all have one size and one prefix length, and that
    entry size on the wire; None for any other list.

    What an Adj-RIB-Out sends is mostly such a list (Calico's /26 blocks): then every value is
    joined in C and the wire octets are picked out column by column with strided slices, instead
    of slicing each value in Python.
    """
    count = len(prefixes)
    if count < 8:
        return None
    width = len(prefixes[0])
    if width not in (6, 18, 10, 22) or min(map(len, prefixes)) != width or max(map(len, prefixes)) != width:
        return None
    joined = b"".join(prefixes)
    at = 5 if width in (10, 22) else 1  # the length octet, behind an ADD-PATH identifier or not
    plen = joined[at]
    if joined[at::width] != _LENGTH_OCTET[plen] * count:
        return None
    columns = [*range(at - 1), *range(at, at + 1 + ((plen + 7) >> 3))]  # identifier, length, octets
    size = len(columns)
    out = bytearray(count * size)
    for k, column in enumerate(columns):
        out[k::size] = joined[column::width]
    return bytes(out), size


def join(prefixes: Iterable[bytes]) -> bytes:
    """Encode a list of entries for an NLRI field (the inverse of `split`)."""
    items = prefixes if type(prefixes) is list else list(prefixes)
    count = len(items)
    if count >= 8:
        same = uniform_wire(items)
        if same is not None:
            return same[0]
    elif count == 1:  # a single route's UPDATE
        return entry_wire(items[0])
    elif not count:
        return b""
    return b"".join([entry_wire(p) for p in items])
