"""Path attribute values as text, for logs and tortiectl (the attribute table's formatters).

AS paths are written the way BIRD and most CLIs write them: an AS_SEQUENCE as its AS numbers, an
AS_SET in braces, confederation segments in parentheses (sequence) and brackets (set). Communities
are `AS:value`, large communities `global:local1:local2`.
"""

from __future__ import annotations

from proto.bgp.constants import Origin, SegmentType
from proto.bgp.model import AsPathSegment

_BRACKETS = {
    SegmentType.AS_SEQUENCE: ("", ""),
    SegmentType.AS_SET: ("{", "}"),
    SegmentType.AS_CONFED_SEQUENCE: ("(", ")"),
    SegmentType.AS_CONFED_SET: ("[", "]"),
}


def origin_text(value: int) -> str:
    return Origin(value).name if value in Origin._value2member_map_ else str(value)


def as_path_text(segments: tuple[AsPathSegment, ...]) -> str:
    parts = []
    for segment in segments:
        left, right = _BRACKETS.get(segment.type, ("<", ">"))
        parts.append(left + " ".join(map(str, segment.asns)) + right)
    return " ".join(parts)


def plain_text(value: object) -> str:
    return str(value)


def flag_text(value: bool) -> str:
    return "yes" if value else "no"


def aggregator_text(value: tuple[int, str]) -> str:
    return f"{value[0]} {value[1]}"


def communities_text(value: tuple[int, ...]) -> str:
    return " ".join(f"{c >> 16}:{c & 0xFFFF}" for c in value)


def addresses_text(value: tuple[str, ...]) -> str:
    return " ".join(value)


def extended_communities_text(value: tuple[bytes, ...]) -> str:
    return " ".join(c.hex() for c in value)


def large_communities_text(value: tuple[tuple[int, int, int], ...]) -> str:
    return " ".join(f"{g}:{a}:{b}" for g, a, b in value)
