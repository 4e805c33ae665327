"""The pieces BGPFilter rules and prefix advertisements are made of: tests on a route's prefix and
attributes, and the changes an Accept rule makes to its attributes.

Semantics are BIRD's, as Calico's confd writes them into BIRD's filters (confd
`pkg/resource/template/template_funcs.go`, BIRD 1.6 as Calico runs it):

- a CIDR with its operator: `In` is BIRD's `net ~ N` (the prefix lies inside N, N itself included),
  `Equal` is `net = N`, `NotIn` and `NotEqual` their negations. With a prefix-length range the CIDR
  becomes the prefix set `[ N{lo,hi} ]`, where confd clamps `lo` to at least N's own length and `hi`
  to at most 32/128; `In` then also needs the length in range. `Equal` against a prefix set is
  BIRD 1.6 comparing a prefix with a set: never equal, so `Equal` with a range matches nothing and
  `NotEqual` with a range matches everything (checked with BIRD 1.6.8's `eval`).
- the AS-path prefix is `bgp_path ~ [= a b * =]`: the path starts with those AS numbers; an AS_SET
  segment is one position that matches an AS number it contains.
- priority is Calico's mapping onto LOCAL_PREF: priority p is LOCAL_PREF 2^31-1-p, so a lower
  priority number is preferred (confd `BirdIntMaxValue`).

Prefixes are `proto.prefix` values (version, length, whole address).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import field, replace

from proto.bgp.constants import SegmentType
from proto.bgp.model import AsPathSegment, PathAttributes
from proto.record import record

BIRD_INT_MAX = 2147483647  # confd's BirdIntMaxValue: priority p <-> LOCAL_PREF BIRD_INT_MAX - p
DEFAULT_LOCAL_PREF = 100  # what BIRD gives a route that arrived without LOCAL_PREF
NORMAL_ROUTE_PRIORITY = 1024  # BGPConfiguration ipv4/ipv6NormalRoutePriority default

_SETS = (SegmentType.AS_SET, SegmentType.AS_CONFED_SET)


def priority_of_local_pref(local_pref: int) -> int:
    return BIRD_INT_MAX - local_pref


def local_pref_of_priority(priority: int) -> int:
    return BIRD_INT_MAX - priority


# ---------------------------------------------------------------- prefixes


@record(frozen=True, slots=True)
class Within:
    """Is a prefix inside `network` (`proto.prefix` form), with its length in [lo, hi]?"""

    network: bytes
    lo: int
    hi: int
    # from `network`, for the per-prefix test: its version, the whole octets it fixes and the end
    # of them, and the mask and value of its partial octet (mask 0: none)
    _version: int = field(init=False, compare=False, repr=False)
    _head: bytes = field(init=False, compare=False, repr=False)
    _end: int = field(init=False, compare=False, repr=False)
    _mask: int = field(init=False, compare=False, repr=False)
    _last: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        net = self.network
        whole, spare = divmod(net[1], 8)
        end = 2 + whole
        mask = 0xFF00 >> spare & 0xFF if spare else 0
        for name, value in (("_version", net[0]), ("_head", net[2:end]), ("_end", end), ("_mask", mask),
                            ("_last", net[end] & mask if mask else 0)):
            object.__setattr__(self, name, value)

    def __call__(self, prefix: bytes) -> bool:
        if prefix[0] != self._version:
            return False
        length = prefix[1]
        if length < self.lo or length > self.hi:
            return False
        end = self._end
        if prefix[2:end] != self._head:
            return False
        return not self._mask or prefix[end] & self._mask == self._last


def within(network: bytes) -> Within:
    """Inside `network`, any length (BIRD `net ~ N`)."""
    return Within(network, network[1], 32 if network[0] == 4 else 128)


@record(frozen=True, slots=True)
class CidrMatch:
    """A rule's CIDR condition: `operator` (Equal, NotEqual, In, NotIn) against the CIDR, or against
    the prefix set `[ CIDR{lo,hi} ]` when the rule has a prefix-length range."""

    network: bytes
    operator: str
    length_range: tuple[int, int] | None = None  # (lo, hi) after confd's clamping
    inside: Within | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, network: bytes, operator: str,
           prefix_length: tuple[int | None, int | None] | None = None) -> CidrMatch:
        if prefix_length is None:
            return cls(network, operator, None, within(network))
        lo, hi = prefix_length
        top = 32 if network[0] == 4 else 128
        rng = (max(network[1], lo if lo is not None else 0), min(top, hi if hi is not None else top))
        return cls(network, operator, rng, Within(network, *rng))

    def __call__(self, prefix: bytes) -> bool:
        op = self.operator
        if self.length_range is not None:
            if op == "Equal":
                return False  # a prefix is never equal to a prefix set (BIRD 1.6)
            if op == "NotEqual":
                return True
        elif op == "Equal":
            return prefix == self.network
        elif op == "NotEqual":
            return prefix != self.network
        inside = self.inside is not None and self.inside(prefix)
        return inside if op == "In" else not inside

    @property
    def empty(self) -> bool:
        """The length range after clamping holds no length (BIRD refuses such a set in its config)."""
        return self.length_range is not None and self.length_range[0] > self.length_range[1]


# ---------------------------------------------------------------- attributes


def as_path_starts_with(segments: Sequence[AsPathSegment] | None, asns: Sequence[int]) -> bool:
    """BIRD's `bgp_path ~ [= a b * =]`."""
    want = list(asns)
    i = 0
    for seg in segments or ():
        if seg.type in _SETS:
            if i >= len(want):
                return True
            if want[i] not in seg.asns:
                return False
            i += 1
            continue
        for asn in seg.asns:
            if i >= len(want):
                return True
            if asn != want[i]:
                return False
            i += 1
    return i >= len(want)


def standard_community(parts: Sequence[int]) -> int:
    return (parts[0] << 16) | parts[1]


def has_community(attrs: PathAttributes, parts: Sequence[int]) -> bool:
    if len(parts) == 3:
        return tuple(parts) in (attrs.large_communities or ())
    return standard_community(parts) in (attrs.communities or ())


def add_communities(attrs: PathAttributes, standard: Sequence[int] = (),
                    large: Sequence[tuple[int, int, int]] = ()) -> PathAttributes:
    """BIRD's `bgp_community.add` / `bgp_large_community.add`: a community already there is not
    added twice. The lists are kept sorted, as BIRD sends them, so equal sets intern together."""
    changes: dict[str, object] = {}
    if standard:
        have = attrs.communities or ()
        new = tuple(sorted(set(have).union(standard)))
        if new != have:
            changes["communities"] = new
    if large:
        have_l = attrs.large_communities or ()
        new_l = tuple(sorted(set(have_l).union(large)))
        if new_l != have_l:
            changes["large_communities"] = new_l
    return replace(attrs, **changes) if changes else attrs  # type: ignore[arg-type]


def prepend_path(segments: tuple[AsPathSegment, ...] | None, asns: Sequence[int]) -> tuple[AsPathSegment, ...]:
    """`asns` in front of the path, first one first (confd prepends them one by one, last first),
    joined into the leading AS_SEQUENCE while it has room (255 numbers a segment)."""
    segs = segments or ()
    out = list(segs)
    for asn in reversed(asns):
        if out and out[0].type == SegmentType.AS_SEQUENCE and len(out[0].asns) < 255:
            out[0] = AsPathSegment(SegmentType.AS_SEQUENCE, (asn, *out[0].asns))
        else:
            out.insert(0, AsPathSegment(SegmentType.AS_SEQUENCE, (asn,)))
    return tuple(out)


def interface_matches(pattern: str, name: str | None) -> bool:
    """BIRD's `ifname ~ "pattern"` (`*` any run of characters); a route without an interface has the
    empty name, which only `*` matches."""
    return fnmatch.fnmatchcase(name or "", pattern)
