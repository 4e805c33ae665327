"""The route-feed decoders: the one felixd runs on bgpd's stream (`proto.feed_wire`, the prefix
form) and the text one (`proto.feed.FeedDecoder`), both checked against the construct
specification on every frame.

Input: one split octet, then the stream (read in two parts, as a socket might deliver it).
Oracle: frames, or FeedError (the documented "drop the connection" outcome) and nothing else; the
fast paths (`decode_feed_body`, and felixd's `decode_wire_body` read back as text) and the spec
(`decode_body_spec`) agree on every frame body, value or
error; and every decoded frame encodes back to exactly the bytes it came from (the wire form has
one encoding per value), through both encoders.
"""

from __future__ import annotations

from collections.abc import Iterator

from fuzz.oracle import Finding
from proto import prefix as pf
from proto.feed import (
    MAX_FRAME_LEN,
    EndOfSnapshot,
    FeedDecoder,
    FeedEncoder,
    FeedError,
    FeedRoute,
    Frame,
    RouteUpdate,
    Withdraw,
    decode_body_spec,
    decode_feed_body,
    encode_frame,
    encode_frame_spec,
)
from proto.feed_wire import WireRoute, WireWithdraw, decode_wire_body

NAME = "feed"
MAX_LEN = 4096
# the code this target exercises, for the line coverage the campaign reports
COVERS = ("proto/feed.py", "proto/feed_wire.py")


def _outcome(fn, body: bytes) -> Frame | FeedError:  # type: ignore[no-untyped-def]
    try:
        return fn(body)  # type: ignore[no-any-return]
    except FeedError as error:
        return error


def _wire_as_text(body: bytes) -> Frame:
    """felixd's prefix-form decode of `body`, as the spec's text values."""
    frame = decode_wire_body(body)
    if isinstance(frame, WireRoute):
        return RouteUpdate(frame.seq, FeedRoute(pf.text(frame.prefix), pf.address_text(frame.next_hop), frame.node,
                                                frame.stale, frame.local_pref, frame.as_path_len))
    if isinstance(frame, WireWithdraw):
        return Withdraw(frame.seq, pf.text(frame.prefix))
    return frame


def check_body(body: bytes) -> Frame | None:
    fast = _outcome(decode_feed_body, body)
    spec = _outcome(decode_body_spec, body)
    wire = _outcome(_wire_as_text, body)
    if isinstance(wire, FeedError) != isinstance(spec, FeedError) or \
            (not isinstance(spec, FeedError) and wire != spec):
        raise Finding(f"felixd's prefix-form decoder and the spec disagree on {body.hex()}: {wire!r} / {spec!r}")
    if isinstance(fast, FeedError) != isinstance(spec, FeedError):
        raise Finding(f"fast path and spec disagree on {body.hex()}: {fast!r} / {spec!r}")
    if isinstance(fast, FeedError):
        return None
    if fast != spec:
        raise Finding(f"fast path and spec decode {body.hex()} differently: {fast!r} / {spec!r}")
    wire = len(body).to_bytes(4, "big") + body
    for encode in (encode_frame, encode_frame_spec):
        try:
            again = encode(fast)
        except FeedError as error:
            raise Finding(f"{encode.__name__} refuses the decoded {fast!r}: {error}") from None
        if again != wire:
            raise Finding(f"{encode.__name__}({fast!r}) = {again.hex()}, decoded from {wire.hex()}")
    return fast


def check(data: bytes) -> None:
    if not data:
        return
    split, stream = data[0], data[1:]
    decoder = FeedDecoder()
    frames: list[Frame] = []
    failed = False
    try:
        decoder.receive_data(stream[:split])
        frames += decoder.frames()
        decoder.receive_data(stream[split:])
        frames += decoder.frames()
    except FeedError:
        failed = True
    # the same stream walked by hand, each body through both decoders
    pos, expect = 0, []
    while pos + 4 <= len(stream):
        length = int.from_bytes(stream[pos:pos + 4], "big")
        if length > MAX_FRAME_LEN or pos + 4 + length > len(stream):
            break
        frame = check_body(stream[pos + 4:pos + 4 + length])
        if frame is None:
            break
        expect.append(frame)
        pos += 4 + length
    if frames != expect[:len(frames)] or (not failed and frames != expect):
        raise Finding(f"FeedDecoder gave {frames!r}, the frames one by one {expect!r}")


def seeds() -> Iterator[bytes]:
    routes = [FeedRoute("192.168.1.0/26", "10.0.0.2", "node-b"),
              FeedRoute("fd00:10::/122", "fd00::2", "node-b", stale=True, local_pref=200, as_path_len=3),
              FeedRoute("10.1.0.0/16", "fe80::1", None, as_path_len=1)]
    enc = FeedEncoder(epoch=1_700_000_000)
    stream = enc.snapshot(routes) + enc.update(FeedRoute("192.168.2.0/26", "10.0.0.3", "node-c"))
    stream += enc.withdraw("192.168.1.0/26") + enc.heartbeat() + enc.withdraw("fd00:10::/122")
    yield bytes((len(stream) // 2,)) + stream
    yield bytes((7,)) + enc.snapshot([]) + encode_frame(EndOfSnapshot(99, 0))
