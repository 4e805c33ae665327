"""The interning cache of decoded attribute blocks: each distinct raw attribute block is decoded once,
and every UPDATE that carries the same bytes shares the one immutable `PathAttributes`.

A block without MP attributes is cached under its own bytes, so a repeat costs one dict lookup.
A block with MP_REACH/MP_UNREACH differs per message (their NLRI), so it is never cached whole: the
other attributes are cached under the concatenation of their raw bytes, which a block that starts
with its MP attribute finds with one slice and one lookup (otherwise it is walked). The MP next hop
is interned separately (update.py), so IPv6 routes share the attribute set and the next-hop tuple.
The layout of an MP block is rebuilt per message: the MP attributes' position is part of it.

Bounded at CACHE_SIZE entries per AS width; the oldest eighth goes when full (insertion order:
cheap, and a set that is still in use comes straight back). A miss goes to `attr_block.fast_block`
and, when that gives up, to the general `decode_block`.
"""

from __future__ import annotations

from itertools import islice

import proto.bgp.attr_values as attr_values
import proto.bgp.attributes as attributes
from proto.bgp.attr_block import (
    Decoded,
    RawAttribute,
    clear_layouts,
    decode_block,
    fast_block,
    intern_layout,
    mp_flags_problem,
    walk,
)
from proto.bgp.attr_table import EXTENDED, MP_CODES, MP_FLAGS, OT_MASK

CACHE_SIZE = 16384
# one cache per AS number width: the same bytes mean different AS_PATHs with and without 4-octet AS
caches: tuple[dict[bytes, Decoded], dict[bytes, Decoded]] = ({}, {})


def store(cache: dict[bytes, Decoded], key: bytes, decoded: Decoded) -> Decoded:
    if len(cache) >= CACHE_SIZE:
        # insertion order approximates age; dropping the oldest eighth at once keeps it amortised
        for old in list(islice(cache, CACHE_SIZE // 8)):
            del cache[old]
    cache[key] = decoded
    return decoded


def cached_block(block: bytes, four: bool) -> tuple[Decoded, list[RawAttribute]]:
    """Decode an attribute block once per distinct raw bytes; MP attributes come back separately."""
    cache = caches[four]
    hit = cache.get(block)
    if hit is not None:
        return hit, []
    if len(block) > 3 and block[1] in MP_CODES:
        # MP attribute first (RFC 7606 section 5.1, and what most speakers send): when the rest is a
        # cached block, no walk is needed. Cached blocks never hold MP attributes or overruns, so
        # this block has exactly one MP attribute and the same outcome as the full walk.
        flags = block[0] & 0xF0
        if flags & EXTENDED:
            start = 4
            end = 4 + ((block[2] << 8) | block[3])
        else:
            start = 3
            end = 3 + block[2]
        base = cache.get(block[end:]) if end <= len(block) else None
        if base is not None:
            code = block[1]
            problems = base.problems
            if flags & OT_MASK != MP_FLAGS:
                problems += (mp_flags_problem(code, flags),)
            layout = ((code, flags), *base.layout)
            # the constructor, not _replace: this runs once per IPv6 UPDATE
            decoded = Decoded(base.attributes, problems, base.present, layout)
            return decoded, [RawAttribute(flags, code, block[start:end], block[:end])]
    fast = fast_block(block, four)
    if fast is not None:
        decoded, mp, at = fast
        if mp is None:
            return store(cache, block, decoded), []
        key = block[:at] + block[at + len(mp.raw) :]
        base = cache.get(key)
        if base is None:
            rest = intern_layout(tuple(p for p in decoded.layout if p[0] not in MP_CODES))
            base = store(cache, key, decoded._replace(layout=rest))
        return Decoded(base.attributes, base.problems, base.present, decoded.layout), [mp]
    return _general(cache, block, four)


def _general(cache: dict[bytes, Decoded], block: bytes, four: bool) -> tuple[Decoded, list[RawAttribute]]:
    entries, overrun = walk(block)
    mp = [e for e in entries if e.code in MP_CODES]
    if overrun is None and not mp:
        decoded, _ = decode_block(entries, None, four)
        return store(cache, block, decoded), []
    if len(mp) > 2 or (len(mp) == 2 and mp[0].code == mp[1].code):
        # a repeated MP attribute resets the session, unless an unrecognised well-known attribute
        # comes first: let the full pass raise whichever the specification meets first
        decode_block(entries, overrun, four, _no_values)
    rest = [e for e in entries if e.code not in MP_CODES]
    if overrun is None:
        key = b"".join(e.raw for e in rest)
        base = cache.get(key)
        if base is None:
            base = store(cache, key, decode_block(rest, None, four)[0])
    else:
        base = decode_block(rest, overrun, four)[0]
    problems = base.problems
    for entry in mp:
        if entry.flags & OT_MASK != MP_FLAGS:
            problems += (mp_flags_problem(entry.code, entry.flags),)
    layout = intern_layout(tuple((e.code, e.flags) for e in entries))
    return base._replace(problems=problems, layout=layout), mp


def _no_values(code: int, value: bytes, four: bool) -> object:
    # used when only the layout and the MP attributes of a block are wanted; the rest is cached
    raise attr_values.Malformed(0, "")


def clear_cache() -> None:
    """Forget every interned attribute set, encoded set, layout and address text (tests, benchmarks)."""
    for cache in caches:
        cache.clear()
    clear_layouts()
    attr_values.clear_texts()
    attributes.clear_encoded()
