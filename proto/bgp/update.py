"""UPDATE messages (RFC 4271 section 4.3, RFC 4760, RFC 7911, RFC 8950): decode and encode the body.

`decode_update` is the hot path: two length fields, one cache lookup for the attribute block and
the hand-written NLRI split. `decode_update_spec` is the same through the construct specification
(`proto.bgp.message_spec.UpdateBody`, `proto.bgp.attr_spec`, imported on first use), uncached;
tests hold the two equal on valid and invalid input.

Order of checks (both paths): the two length fields (3/1, RFC 4271 section 6.3), then the path
attributes (session-resetting errors first met in block order: 3/2, 3/1 for a repeated MP
attribute, 3/9 for a malformed MP_REACH_NLRI / MP_UNREACH_NLRI including its NLRI, RFC 4760
section 7 and RFC 7606 sections 5.3 and 7.11, except a next hop of the wrong length, which is
treat-as-withdraw since the NLRI behind it can still be found, RFC 7606 section 7.11), then the
Withdrawn Routes and NLRI fields (3/10,
RFC 4271 section 6.3; RFC 7606 section 5.3 keeps session reset for them). What RFC 7606 handles
without a reset lands in `Update.problems`. An MP attribute for a family other than IPv4/IPv6
unicast is dropped with an attribute-discard problem: its NLRI cannot be parsed, so nothing of it
can be used or withdrawn.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import proto.bgp.nlri as nlri_mod
from proto.bgp.attr_block import RawAttribute, spec_block
from proto.bgp.attr_cache import cached_block, caches
from proto.bgp.attr_table import DISCARD, EXTENDED, MP_FLAGS, WITHDRAW
from proto.bgp.attributes import encode_attribute, encoded_block, encoded_parts, ordered
from proto.bgp.constants import HEADER_LEN, IPV4_UNICAST, AttrCode, ErrorCode, UpdateError
from proto.bgp.family import FAMILIES, IPV4
from proto.bgp.model import (
    AttributeProblem,
    MessageError,
    MpReach,
    MpUnreach,
    Negotiated,
    PathAttributes,
    Update,
)
from proto.bgp.nlri import NlriError

_MP_REACH = AttrCode.MP_REACH_NLRI
_MP_UNREACH = AttrCode.MP_UNREACH_NLRI
_MANDATORY = (AttrCode.ORIGIN, AttrCode.AS_PATH, AttrCode.NEXT_HOP)


def _length_error(reason: str) -> MessageError:
    return MessageError(ErrorCode.UPDATE_MESSAGE, UpdateError.MALFORMED_ATTRIBUTE_LIST, reason=reason)


def _network_error(field: str, exc: NlriError) -> MessageError:
    return MessageError(ErrorCode.UPDATE_MESSAGE, UpdateError.INVALID_NETWORK_FIELD, reason=f"{field}: {exc}")


def _mp_error(raw: bytes, reason: str) -> MessageError:
    return MessageError(ErrorCode.UPDATE_MESSAGE, UpdateError.OPTIONAL_ATTRIBUTE_ERROR, raw, reason)


# ---------------------------------------------------------------- MP_REACH / MP_UNREACH

_split = IPV4.split  # the hand-written splitter (one function for every family, given the AFI)
_USUAL = frozenset(f.afi << 16 | f.safi << 8 | n for f in FAMILIES.values() for n in f.next_hop_lengths)

_next_hops: dict[bytes, tuple[str, ...]] = {}
_NEXT_HOP_CACHE_SIZE = 4096


def _next_hop(raw: bytes) -> tuple[str, ...]:
    """The textual next hop(s) of MP_REACH_NLRI, interned: routes of one next hop share a tuple."""
    hit = _next_hops.get(raw)
    if hit is not None:
        return hit
    if len(raw) == 4:
        value: tuple[str, ...] = (socket.inet_ntoa(raw),)
    elif len(raw) == 16:
        value = (socket.inet_ntop(socket.AF_INET6, raw),)
    else:  # 32: global + link-local (RFC 2545 section 3)
        value = (socket.inet_ntop(socket.AF_INET6, raw[:16]), socket.inet_ntop(socket.AF_INET6, raw[16:]))
    if len(_next_hops) >= _NEXT_HOP_CACHE_SIZE:
        _next_hops.clear()
    _next_hops[raw] = value
    return value


def _unsupported(code: int, family: tuple[int, int]) -> AttributeProblem:
    return AttributeProblem(
        DISCARD,
        code,
        UpdateError.OPTIONAL_ATTRIBUTE_ERROR,
        f"{AttrCode(code).name} for unsupported AFI/SAFI {family[0]}/{family[1]}",
    )


def _mp_reach(
    value: bytes, raw: bytes, negotiated: Negotiated, spec: bool
) -> MpReach | AttributeProblem | tuple[MpReach, AttributeProblem]:
    if spec:
        from construct import ConstructError

        from proto.bgp.attr_spec import MpReachSpec

        try:
            parsed = MpReachSpec.parse(value)
        except ConstructError as exc:
            raise _mp_error(raw, "MP_REACH_NLRI truncated") from exc
        afi, safi, hop, rest = parsed.afi, parsed.safi, parsed.next_hop, parsed.nlri
    else:
        size = len(value)
        if size < 5 or size < 5 + value[3]:
            raise _mp_error(raw, "MP_REACH_NLRI truncated")
        afi = (value[0] << 8) | value[1]
        safi = value[2]
        end = 4 + value[3]
        if (afi << 16 | safi << 8 | value[3]) in _USUAL:
            # a family of the table with a next-hop length every session accepts for it: the
            # usual shapes, checked with one int; everything else takes the general path
            add_path = negotiated.add_path_receive
            try:
                prefixes = _split(value[end + 1 :], afi, bool(add_path) and (afi, safi) in add_path)
            except NlriError as exc:
                raise _mp_error(raw, f"MP_REACH_NLRI: {exc}") from exc
            hop = value[4:end]
            return MpReach(afi, safi, _next_hops.get(hop) or _next_hop(hop), prefixes)
        hop = value[4:end]
        rest = value[end + 1 :]
    family = FAMILIES.get((afi, safi))
    if family is None:
        return _unsupported(_MP_REACH, (afi, safi))
    split = family.split_spec if spec else family.split
    try:
        prefixes = split(rest, afi, (afi, safi) in negotiated.add_path_receive)
    except NlriError as exc:
        raise _mp_error(raw, f"MP_REACH_NLRI: {exc}") from exc
    if len(hop) not in family.next_hop_lengths_for(negotiated):
        # RFC 7606 section 7.11: the NLRI can still be located behind a next hop of the wrong
        # length, so its routes are withdrawn rather than the session reset; no next hop is kept
        problem = AttributeProblem(
            WITHDRAW,
            _MP_REACH,
            UpdateError.OPTIONAL_ATTRIBUTE_ERROR,
            f"MP_REACH_NLRI next hop of {len(hop)} octets for AFI/SAFI {afi}/{safi}",
        )
        return MpReach(afi, safi, (), prefixes), problem
    return MpReach(afi, safi, _next_hop(hop), prefixes)


def _mp_unreach(value: bytes, raw: bytes, negotiated: Negotiated, spec: bool) -> MpUnreach | AttributeProblem:
    if spec:
        from construct import ConstructError

        from proto.bgp.attr_spec import MpUnreachSpec

        try:
            parsed = MpUnreachSpec.parse(value)
        except ConstructError as exc:
            raise _mp_error(raw, "MP_UNREACH_NLRI truncated") from exc
        afi, safi, rest = parsed.afi, parsed.safi, parsed.withdrawn
    else:
        if len(value) < 3:
            raise _mp_error(raw, "MP_UNREACH_NLRI truncated")
        afi = (value[0] << 8) | value[1]
        safi = value[2]
        rest = value[3:]
    family = FAMILIES.get((afi, safi))
    if family is None:
        return _unsupported(_MP_UNREACH, (afi, safi))
    split = family.split_spec if spec else family.split
    try:
        prefixes = split(rest, afi, (afi, safi) in negotiated.add_path_receive)
    except NlriError as exc:
        raise _mp_error(raw, f"MP_UNREACH_NLRI: {exc}") from exc
    return MpUnreach(afi, safi, prefixes)


# ---------------------------------------------------------------- decoding

_NO_ATTRIBUTES = tuple(
    AttributeProblem(
        WITHDRAW,
        code,
        UpdateError.MISSING_WELL_KNOWN_ATTRIBUTE,
        f"{AttrCode(code).name} missing with NLRI present",
    )
    for code in _MANDATORY
)
_MISSING = {p.code: p for p in _NO_ATTRIBUTES}


def _decode(body: bytes, negotiated: Negotiated, spec: bool, known: Any = None) -> Update:
    """Both paths past the fast return of `decode_update`; `known` is the block's result when the
    caller already has it (so the fast path does not look the block up twice)."""
    if spec:
        from construct import ConstructError

        from proto.bgp.message_spec import UpdateBody

        try:
            parsed = UpdateBody.parse(body)
        except ConstructError as exc:
            raise _length_error("Withdrawn Routes Length or Total Path Attribute Length too large") from exc
        withdrawn_field: bytes = parsed.withdrawn
        block: bytes = parsed.attributes
        nlri_field: bytes = parsed.nlri
    else:
        size = len(body)
        if size < 4:
            raise _length_error("UPDATE shorter than its two length fields")
        wend = 2 + ((body[0] << 8) | body[1])
        if wend + 2 > size:
            raise _length_error("Withdrawn Routes Length too large")
        aend = wend + 2 + ((body[wend] << 8) | body[wend + 1])
        if aend > size:
            raise _length_error("Total Path Attribute Length too large")
        withdrawn_field = body[2:wend]
        block = body[wend + 2 : aend]
        nlri_field = body[aend:]
    four = negotiated.four_octet_as
    attributes: PathAttributes | None = None
    problems: tuple[AttributeProblem, ...] = ()
    layout: tuple[tuple[int, int], ...] = ()
    present = 0
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    if block:
        if known is not None:
            decoded, mp = known
        else:
            decoded, mp = spec_block(block, four) if spec else cached_block(block, four)
        attributes, problems, present, layout = decoded
        for entry in mp:
            code = entry.code
            if code == _MP_REACH:
                item: Any = _mp_reach(entry.value, entry.raw, negotiated, spec)
            else:
                item = _mp_unreach(entry.value, entry.raw, negotiated, spec)
            if isinstance(item, tuple):
                item, problem = item
                problems += (problem,)
            if isinstance(item, AttributeProblem):
                problems += (item,)
            elif code == _MP_REACH:
                mp_reach = item
            else:
                mp_unreach = item
    # the UPDATE's own fields carry IPv4 unicast (the family table's one in_update_fields row)
    add_path = IPV4_UNICAST in negotiated.add_path_receive
    split = IPV4.split_spec if spec else IPV4.split
    try:
        withdrawn = split(withdrawn_field, IPV4.afi, add_path) if withdrawn_field else []
    except NlriError as exc:
        raise _network_error("Withdrawn Routes", exc) from exc
    try:
        nlri = split(nlri_field, IPV4.afi, add_path) if nlri_field else []
    except NlriError as exc:
        raise _network_error("NLRI", exc) from exc
    if nlri or (mp_reach is not None and mp_reach.nlri):
        # RFC 7606 section 3.d: a missing well-known mandatory attribute is treat-as-withdraw;
        # NEXT_HOP is mandatory only for the NLRI field (RFC 4760 section 3)
        if not block:
            problems = _NO_ATTRIBUTES if nlri else _NO_ATTRIBUTES[:2]
        else:
            for code in _MANDATORY if nlri else _MANDATORY[:2]:
                if not present >> code & 1:
                    problems += (_MISSING[code],)
    return Update(withdrawn, attributes, nlri, mp_reach, mp_unreach, problems, layout)


_COMPLETE = (1 << AttrCode.ORIGIN) | (1 << AttrCode.AS_PATH) | (1 << AttrCode.NEXT_HOP)
_NO_MP: list[RawAttribute] = []


def decode_update(body: bytes, negotiated: Negotiated) -> Update:
    """Decode an UPDATE body (the message without its 19-octet header): the fast path.

    Raises MessageError for what resets the session; RFC 7606 outcomes are in `Update.problems`.
    The common case (IPv4, attribute block seen before, no problems) is inlined here; everything
    else goes through `_decode`, which is the same code the specification path runs.
    """
    size = len(body)
    if size < 4:
        raise _length_error("UPDATE shorter than its two length fields")
    wend = 2 + ((body[0] << 8) | body[1])
    if wend + 2 > size:
        raise _length_error("Withdrawn Routes Length too large")
    aend = wend + 2 + ((body[wend] << 8) | body[wend + 1])
    if aend > size or aend == wend + 2:
        return _decode(body, negotiated, False)
    block = body[wend + 2 : aend]
    decoded = caches[negotiated.four_octet_as].get(block)
    if decoded is None:
        decoded, mp = cached_block(block, negotiated.four_octet_as)
        if mp:
            return _decode(body, negotiated, False, (decoded, mp))
    if decoded.problems or decoded.present & _COMPLETE != _COMPLETE:
        return _decode(body, negotiated, False, (decoded, _NO_MP))
    add_path = bool(negotiated.add_path_receive) and IPV4_UNICAST in negotiated.add_path_receive
    try:
        withdrawn = _split(body[2:wend], 1, add_path) if wend > 2 else []
    except NlriError as exc:
        raise _network_error("Withdrawn Routes", exc) from exc
    try:
        nlri = _split(body[aend:], 1, add_path) if aend < size else []
    except NlriError as exc:
        raise _network_error("NLRI", exc) from exc
    return Update(withdrawn, decoded.attributes, nlri, None, None, (), decoded.layout)


def decode_update_spec(body: bytes, negotiated: Negotiated) -> Update:
    """The same through the construct specification, uncached (the reference in tests)."""
    return _decode(body, negotiated, True)


# ---------------------------------------------------------------- encoding


def address_bytes(text: str) -> bytes:
    """The packed form of an IPv4 or IPv6 address in text."""
    if ":" in text:
        return socket.inet_pton(socket.AF_INET6, text)
    return socket.inet_aton(text)


def mp_reach_value(reach: MpReach) -> bytes:
    hop = b"".join(address_bytes(a) for a in reach.next_hop)
    return struct.pack("!HBB", reach.afi, reach.safi, len(hop)) + hop + b"\0" + nlri_mod.join(reach.nlri)


def mp_unreach_value(unreach: MpUnreach) -> bytes:
    return struct.pack("!HB", unreach.afi, unreach.safi) + nlri_mod.join(unreach.withdrawn)


def encode_update(update: Update, negotiated: Negotiated) -> bytes:
    """Encode an UPDATE body (without header). Prefix entries are sent as given: with ADD-PATH
    (`negotiated.add_path_send`) they must already carry their path identifier."""
    four = negotiated.four_octet_as
    layout = update.layout
    attributes = update.attributes
    if update.mp_reach is None and update.mp_unreach is None:
        block = encoded_block(attributes, four, layout) if attributes is not None else b""
    else:
        encoded = dict(encoded_parts(attributes, four, layout)) if attributes is not None else {}
        extended = {code for code, flags in layout if flags & EXTENDED}
        if update.mp_reach is not None:
            flags = MP_FLAGS | (EXTENDED if _MP_REACH in extended else 0)
            encoded[_MP_REACH] = encode_attribute(flags, _MP_REACH, mp_reach_value(update.mp_reach))
        if update.mp_unreach is not None:
            flags = MP_FLAGS | (EXTENDED if _MP_UNREACH in extended else 0)
            encoded[_MP_UNREACH] = encode_attribute(flags, _MP_UNREACH, mp_unreach_value(update.mp_unreach))
        block = b"".join(encoded[code] for code in ordered(encoded, layout))
    withdrawn = nlri_mod.join(update.withdrawn)
    body = (
        len(withdrawn).to_bytes(2, "big")
        + withdrawn
        + len(block).to_bytes(2, "big")
        + block
        + nlri_mod.join(update.nlri)
    )
    if HEADER_LEN + len(body) > negotiated.max_message_len:
        raise ValueError(f"UPDATE of {HEADER_LEN + len(body)} octets exceeds {negotiated.max_message_len}")
    return body
