"""2-octet AS peers (RFC 6793): the AS_PATH length route selection counts, folding AS4_PATH and
AS4_AGGREGATOR into the real path of a route received from a 2-octet AS speaker, and the attribute
set to send to one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from proto.bgp.constants import AS_TRANS, SegmentType
from proto.bgp.model import AsPathSegment, PathAttributes

_CONFED = (SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET)


def path_length(segments: tuple[AsPathSegment, ...]) -> int:
    """AS_PATH length as route selection counts it: an AS_SET is one, confederation segments zero
    (RFC 4271 section 9.1.2.2, RFC 5065 section 5.3)."""
    total = 0
    for segment in segments:
        if segment.type == SegmentType.AS_SEQUENCE:
            total += len(segment.asns)
        elif segment.type == SegmentType.AS_SET:
            total += 1
    return total


def merge_as4(attrs: PathAttributes) -> PathAttributes:
    """The real AS_PATH and AGGREGATOR of a route received from a 2-octet AS speaker (RFC 6793
    section 4.2.3), with AS4_PATH / AS4_AGGREGATOR folded in and removed. Only for sessions
    without 4-octet AS: a 4-octet speaker's AS4 attributes are to be ignored (section 4.1)."""
    if attrs.as4_path is None and attrs.as4_aggregator is None:
        return attrs
    aggregator = attrs.aggregator
    as4_path = attrs.as4_path
    if attrs.as4_aggregator is not None and aggregator is not None:
        if aggregator[0] != AS_TRANS:
            # the aggregating speaker was itself a 2-octet one: both AS4 attributes are stale
            return replace(attrs, as4_path=None, as4_aggregator=None)
        aggregator = attrs.as4_aggregator
    as_path = attrs.as_path
    if as4_path is not None and as_path is not None:
        as4_path = tuple(s for s in as4_path if s.type not in _CONFED)
        need = path_length(as_path) - path_length(as4_path)
        if need >= 0:  # otherwise AS4_PATH is longer and is ignored
            lead: list[AsPathSegment] = []
            for segment in as_path:
                if need <= 0:
                    break
                if segment.type == SegmentType.AS_SEQUENCE:
                    lead.append(AsPathSegment(segment.type, segment.asns[:need]))
                    need -= len(lead[-1].asns)
                else:
                    lead.append(segment)
                    need -= segment.type == SegmentType.AS_SET
            as_path = (*lead, *as4_path)
    return replace(attrs, as_path=as_path, aggregator=aggregator, as4_path=None, as4_aggregator=None)


def for_two_octet_peer(attrs: PathAttributes) -> PathAttributes:
    """The attribute set to send to a speaker without 4-octet AS (RFC 6793 section 4.2.2): AS
    numbers above 65535 become AS_TRANS, and the real ones travel in AS4_PATH / AS4_AGGREGATOR."""
    fields: dict[str, Any] = {}
    path = attrs.as_path or ()
    if any(a > 0xFFFF for s in path for a in s.asns):
        fields["as_path"] = tuple(
            AsPathSegment(s.type, tuple(a if a <= 0xFFFF else AS_TRANS for a in s.asns)) for s in path
        )
        fields["as4_path"] = tuple(s for s in path if s.type not in _CONFED)
    if attrs.aggregator is not None and attrs.aggregator[0] > 0xFFFF:
        fields["aggregator"] = (AS_TRANS, attrs.aggregator[1])
        fields["as4_aggregator"] = attrs.aggregator
    return replace(attrs, **fields) if fields else attrs
