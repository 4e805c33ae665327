"""A small pure-Python pcap reader with per-direction TCP reassembly and BGP message framing.

Just enough for the captures under tests/data/captures: classic pcap (micro- or nanosecond, either
byte order), Ethernet / Linux cooked (v1, v2) / raw IP link types, IPv4 and IPv6, TCP. It owes nothing
to the codec under test, so the oracle test can compare the codec with Wireshark on equal terms.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

BGP_MARKER = b"\xff" * 16


class PcapError(ValueError):
    pass


@dataclass(frozen=True)
class Packet:
    number: int  # 1-based frame number, as Wireshark counts
    timestamp: float
    data: bytes  # the link-layer frame as captured
    linktype: int


@dataclass(frozen=True)
class Segment:
    frame: int
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    flags: int
    payload: bytes

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def fin(self) -> bool:
        return bool(self.flags & 0x01)


Direction = tuple[str, int, str, int]  # src, sport, dst, dport


def read_pcap(path: str | Path) -> Iterator[Packet]:
    raw = Path(path).read_bytes()
    if len(raw) < 24:
        raise PcapError("file shorter than a pcap global header")
    magic = raw[:4]
    table = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in table:
        raise PcapError(f"not a classic pcap file (magic {magic.hex()}); pcapng is not supported")
    endian, unit = table[magic]
    linktype = struct.unpack(endian + "I", raw[20:24])[0] & 0x0FFFFFFF
    off, number = 24, 0
    while off < len(raw):
        if off + 16 > len(raw):
            raise PcapError("truncated packet header")
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", raw[off:off + 16])
        off += 16
        if off + incl > len(raw):
            raise PcapError("truncated packet data")
        number += 1
        yield Packet(number, sec + frac * unit, raw[off:off + incl], linktype)
        off += incl


def _network_layer(pkt: Packet) -> tuple[int, bytes] | None:
    """(ethertype, network-layer bytes), or None for frames that carry no IP."""
    d = pkt.data
    if pkt.linktype == LINKTYPE_ETHERNET:
        etype, off = struct.unpack("!H", d[12:14])[0], 14
        while etype in (0x8100, 0x88A8):  # VLAN tags
            etype, off = struct.unpack("!H", d[off + 2:off + 4])[0], off + 4
        return etype, d[off:]
    if pkt.linktype == LINKTYPE_LINUX_SLL:
        return struct.unpack("!H", d[14:16])[0], d[16:]
    if pkt.linktype == LINKTYPE_LINUX_SLL2:
        return struct.unpack("!H", d[0:2])[0], d[20:]
    if pkt.linktype == LINKTYPE_RAW:
        version = d[0] >> 4
        return (0x0800 if version == 4 else 0x86DD), d
    raise PcapError(f"unsupported link type {pkt.linktype}")


def tcp_segment(pkt: Packet) -> Segment | None:
    """The TCP segment in a frame, or None when the frame holds no TCP."""
    net = _network_layer(pkt)
    if net is None:
        return None
    etype, ip = net
    if etype == 0x0800:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            return None
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        tcp = ip[ihl:total]
    elif etype == 0x86DD:
        nxt, plen = ip[6], struct.unpack("!H", ip[4:6])[0]
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        body = ip[40:40 + plen]
        while nxt in (0, 43, 60):  # hop-by-hop, routing, destination options
            nxt, body = body[0], body[(body[1] + 1) * 8:]
        if nxt != 6:
            return None
        tcp = body
    else:
        return None
    sport, dport, seq, _ack, off_flags = struct.unpack("!HHIIH", tcp[:14])
    data_off = (off_flags >> 12) * 4
    return Segment(pkt.number, src, sport, dst, dport, seq, off_flags & 0x1FF, bytes(tcp[data_off:]))


@dataclass
class Stream:
    """One direction of one TCP connection, reassembled in sequence order."""

    direction: Direction
    data: bytearray = field(default_factory=bytearray)
    # for every byte offset where a segment's data ends: the frame that completed it
    ends: list[tuple[int, int]] = field(default_factory=list)

    def frame_of_offset(self, end: int) -> int:
        """The frame whose arrival first made bytes [0, end) of the stream available."""
        for stop, frame in self.ends:
            if stop >= end:
                return frame
        raise PcapError(f"offset {end} beyond the reassembled stream")


def reassemble(path: str | Path) -> dict[Direction, Stream]:
    """Every TCP direction in the capture, in order; retransmissions and overlaps dropped."""
    segments: dict[Direction, list[Segment]] = {}
    for pkt in read_pcap(path):
        seg = tcp_segment(pkt)
        if seg is None:
            continue
        segments.setdefault((seg.src, seg.sport, seg.dst, seg.dport), []).append(seg)
    streams: dict[Direction, Stream] = {}
    for direction, segs in segments.items():
        syn = next((s for s in segs if s.syn), None)
        isn = (syn.seq + 1) if syn else min(s.seq for s in segs if s.payload)
        stream = Stream(direction)
        buffered: dict[int, bytes] = {}
        # in arrival order, so data held back by a gap is credited to the frame that fills the gap
        for seg in sorted(segs, key=lambda s: s.frame):
            if not seg.payload:
                continue
            rel = (seg.seq - isn) % 2**32
            if len(seg.payload) > len(buffered.get(rel, b"")):
                buffered[rel] = seg.payload
            grew = False
            while True:
                have = len(stream.data)
                ready = [start for start in buffered if start <= have]
                if not ready:
                    break
                for start in ready:
                    payload = buffered.pop(start)
                    if start + len(payload) > len(stream.data):
                        stream.data += payload[len(stream.data) - start:]
                        grew = True
            if grew:
                stream.ends.append((len(stream.data), seg.frame))
        if buffered:
            raise PcapError(f"gap in TCP stream {direction}: {len(buffered)} segment(s) never joined")
        streams[direction] = stream
    return streams


@dataclass(frozen=True)
class Framed:
    direction: Direction
    index: int  # position within this direction
    offset: int  # byte offset within the direction's stream
    frame: int  # the frame carrying the message's last byte (where Wireshark reports it)
    data: bytes  # one whole BGP message, header included

    @property
    def type(self) -> int:
        return self.data[18]


def frame_bgp(stream: Stream) -> list[Framed]:
    """Split one direction's bytes into whole BGP messages by the header length field."""
    out: list[Framed] = []
    data, off = bytes(stream.data), 0
    while off < len(data):
        if len(data) - off < 19:
            raise PcapError(f"{stream.direction}: {len(data) - off} trailing bytes, not a BGP header")
        if data[off:off + 16] != BGP_MARKER:
            raise PcapError(f"{stream.direction}: no BGP marker at offset {off}")
        length = struct.unpack("!H", data[off + 16:off + 18])[0]
        if length < 19 or off + length > len(data):
            raise PcapError(f"{stream.direction}: bad or truncated BGP message at offset {off}")
        end = off + length
        out.append(Framed(stream.direction, len(out), off, stream.frame_of_offset(end), data[off:end]))
        off = end
    return out


def bgp_messages(path: str | Path, port: int = 179) -> dict[Direction, list[Framed]]:
    """Every BGP message of every TCP connection to or from `port`, per direction."""
    return {d: frame_bgp(s) for d, s in reassemble(path).items() if port in (d[1], d[3])}
