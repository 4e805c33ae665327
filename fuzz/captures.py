"""Seed material from the captured sessions in tests/data/captures (real BIRD, GoBGP, FRR traffic):
every BGP message with the `Negotiated` its receiver parsed it with."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from proto.bgp import Negotiated, Open, decode_message, negotiate
from tests.pcaplib import bgp_messages

CAPTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "captures"


@dataclass(frozen=True)
class Captured:
    capture: str
    direction: tuple[str, int, str, int]
    data: bytes  # one whole message, header included
    receive: Negotiated  # what the receiver had negotiated (OPENs themselves: the default)


@cache
def captured_messages() -> tuple[Captured, ...]:
    out: list[Captured] = []
    for pcap in sorted(CAPTURES.glob("*.pcap")):
        streams = bgp_messages(pcap)
        opens: dict[tuple[str, int, str, int], Open] = {}
        for direction, framed in streams.items():
            for f in framed:
                if f.type == 1:
                    msg = decode_message(f.data, Negotiated())
                    assert isinstance(msg, Open)
                    opens[direction] = msg
        for direction, framed in streams.items():
            back = (direction[2], direction[3], direction[0], direction[1])
            receive = Negotiated()
            if direction in opens and back in opens:
                receive = negotiate(opens[back], opens[direction])
            out.extend(Captured(pcap.stem, direction, f.data, receive) for f in framed)
    return tuple(out)
