"""Codec benchmark: tortie's proto.bgp against ExaBGP 5's decoder/encoder, in the same run.

Two synthetic streams, built byte by byte here (neither codec builds its own input):
  (a) 100,000 IPv4 /26 prefixes, 500 per UPDATE, one attribute set;
  (b) 100,000 UPDATEs of one /26 each, cycling through 200 next hops.
Decode: the whole stream split into messages and every UPDATE decoded to prefixes and attributes
(tortie through its stream framer; ExaBGP through a minimal header split, which is cheaper than its
own reader, so the comparison is conservative). Encode: the decoded UPDATEs encoded back to bytes.

Prints rates and ratios; writes bench/results/codec.json. Needs `pip install '.[bench]'` (ExaBGP 5).
Run: .venv/bin/python bench/codec.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "codec.json"
N = 100_000


def _attr(flags: int, code: int, value: bytes) -> bytes:
    return struct.pack("!BBB", flags, code, len(value)) + value


def _attributes(next_hop: int) -> bytes:
    # ORIGIN IGP, AS_PATH one 4-octet AS_SEQUENCE, NEXT_HOP, MED, LOCAL_PREF: an iBGP mesh route
    as_path = struct.pack("!BBI", 2, 1, 64512)
    return (_attr(0x40, 1, b"\x00") + _attr(0x40, 2, as_path) + _attr(0x40, 3, struct.pack("!I", next_hop))
            + _attr(0x80, 4, struct.pack("!I", 0)) + _attr(0x40, 5, struct.pack("!I", 100)))


def _prefix(i: int) -> bytes:
    addr = 0x0A000000 + (i << 6)  # 10.0.0.0 + i * 64: distinct /26s
    return bytes([26]) + struct.pack("!I", addr)[:4]


def _update(attrs: bytes, nlri: bytes) -> bytes:
    body = struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + body


def stream_bulk() -> bytes:
    attrs = _attributes(0x0A1E0001)
    return b"".join(_update(attrs, b"".join(_prefix(i) for i in range(start, start + 500)))
                    for start in range(0, N, 500))


def stream_single() -> bytes:
    attr_sets = [_attributes(0x0A1E0000 + 1 + k) for k in range(200)]
    return b"".join(_update(attr_sets[i % 200], _prefix(i)) for i in range(N))


# ---------------------------------------------------------------- tortie


def tortie_side() -> tuple[Callable[[bytes], tuple[int, list[Any]]], Callable[[list[Any]], int]]:
    from proto.bgp import Framer, MsgType, Negotiated, decode_body, encode_message

    neg = Negotiated(four_octet_as=True)
    update_type = int(MsgType.UPDATE)

    def decode(stream: bytes) -> tuple[int, list[Any]]:
        # the session's own path: the stream framer, then the body decoder per message
        framer = Framer(neg.max_message_len)
        prefixes, updates = 0, []
        for msg_type, body in framer.feed(stream):
            if msg_type == update_type:
                msg = decode_body(msg_type, body, neg)
                prefixes += len(msg.nlri)
                updates.append(msg)
        return prefixes, updates

    def encode(updates: list[Any]) -> int:
        return sum(len(encode_message(u, neg)) for u in updates)

    return decode, encode


# ---------------------------------------------------------------- ExaBGP 5


def exabgp_side() -> tuple[Callable[[bytes], tuple[int, list[Any]]], Callable[[list[Any]], int]]:
    from exabgp.logger import log

    log.disable()  # its fastest path: no logging work at all
    from exabgp.bgp.message import Update
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.open import ASN, HoldTime, Open, RouterID, Version
    from exabgp.bgp.message.open.capability import Capabilities, Capability
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.family import AFI, SAFI

    neg = Negotiated(Neighbor())
    capa = Capabilities()
    capa[Capability.CODE.FOUR_BYTES_ASN] = ASN(64512)
    capa[Capability.CODE.MULTIPROTOCOL] = [(AFI.ipv4, SAFI.unicast)]
    neg.sent(Open(Version(4), ASN(64512), HoldTime(180), RouterID("10.30.0.1"), capa))
    neg.received(Open(Version(4), ASN(64512), HoldTime(180), RouterID("10.30.0.2"), capa))
    if not neg.asn4:
        raise SystemExit("ExaBGP did not negotiate 4-octet AS: the benchmark would not be fair")

    def decode(stream: bytes) -> tuple[int, list[Any]]:
        pos, end, prefixes, updates = 0, len(stream), 0, []
        unpack = Update.unpack_message
        while pos < end:
            length = (stream[pos + 16] << 8) | stream[pos + 17]
            if stream[pos + 18] == 2:
                upd = unpack(stream[pos + 19:pos + length], Direction.IN, neg)
                prefixes += len(upd.nlris)
                updates.append(upd)
            pos += length
        return prefixes, updates

    def encode(updates: list[Any]) -> int:
        return sum(len(m) for u in updates for m in u.messages(neg))

    return decode, encode


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sides = {"tortie": tortie_side(), "exabgp": exabgp_side()}
    results: dict[str, Any] = {"peer": "ExaBGP 5", "repeat": args.repeat, "python": platform.python_version(),
                               "mixes": {}}
    for mix, build in (("bulk_500_per_update", stream_bulk), ("single_prefix_200_attr_sets", stream_single)):
        stream = build()
        row: dict[str, Any] = {"messages": N // 500 if mix.startswith("bulk") else N, "prefixes": N}
        for name, (decode, encode) in sides.items():
            dt, (count, updates) = best_of(lambda d=decode, s=stream: d(s), args.repeat)  # type: ignore[misc]
            if count != N:
                raise SystemExit(f"{name} decoded {count} prefixes of {N} in {mix}")
            et, _ = best_of(lambda e=encode, u=updates: e(u), args.repeat)  # type: ignore[misc]
            row[name] = {"decode_s": round(dt, 4), "decode_prefixes_per_s": round(N / dt),
                         "decode_updates_per_s": round(row["messages"] / dt),
                         "encode_s": round(et, 4), "encode_updates_per_s": round(row["messages"] / et)}
        row["decode_ratio"] = round(row["exabgp"]["decode_s"] / row["tortie"]["decode_s"], 2)
        row["encode_ratio"] = round(row["exabgp"]["encode_s"] / row["tortie"]["encode_s"], 2)
        results["mixes"][mix] = row
        print(f"{mix}: decode tortie {row['tortie']['decode_prefixes_per_s']:,} prefixes/s, "
              f"ExaBGP {row['exabgp']['decode_prefixes_per_s']:,}/s -> {row['decode_ratio']}x; "
              f"encode tortie {row['tortie']['encode_updates_per_s']:,} UPDATEs/s, "
              f"ExaBGP {row['exabgp']['encode_updates_per_s']:,}/s -> {row['encode_ratio']}x")
    results["target"] = "decode ratio >= 5 on both mixes"
    results["met"] = all(r["decode_ratio"] >= 5 for r in results["mixes"].values())
    results["median_decode_ratio"] = statistics.median(r["decode_ratio"] for r in results["mixes"].values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
