"""The independent oracle: proto.bgp against Wireshark on real sessions between real daemons.

tests/data/captures/<name>.pcap holds one session each (BIRD 2 <-> GoBGP, FRR <-> BIRD 2), made by
scripts/make_captures.py; <name>.tshark.json is Wireshark's dissection of the same file (trimmed to
the BGP layer). Here, with neither root nor tshark: `tests.pcaplib` reassembles each TCP direction and
frames the BGP messages; every message is decoded with `proto.bgp.decode_message` (the Negotiated for
each direction derived from the two OPENs), compared field by field with Wireshark's view, and
re-encoded with `proto.bgp.encode_message` to the exact captured bytes.

Mapping from Wireshark fields where they are not one-to-one (documented because they are choices):
- Wireshark shows a message in the frame that carries its last byte; pcaplib reports the same frame.
- Capabilities are flattened across optional parameters in wire order on both sides. Capability 128
  (the pre-standard Cisco route refresh) has no model class: it must come back as an opaque
  `Capability(128, b"")`; so must every capability Wireshark calls `bgp.cap.unknown` (e.g. 71, LLGR).
- GR flags: `bgp.cap.gr.timers_tree` restart_flag -> `restarting`, notification_flag ->
  `notification`; per family `bgp.cap.gr.flag` bit 0x80 -> forwarding state preserved.
- Prefixes: Wireshark gives (path id?, length, address); the model keeps the wire form, so the test
  builds path id (4 octets, when Wireshark shows one) + length octet + ceil(length/8) address octets.
- COMMUNITIES: Wireshark lists ordinary communities (as, value) under `community` and well-known
  ones under a separate `community_wellknown` key, which loses their relative order; the values are
  compared as a multiset and the ordinary ones in order (the byte-exact re-encode covers the order).
- EXTENDED_COMMUNITIES: Wireshark splits each into type, subtype and type-dependent values; the test
  rebuilds the 8 octets for the two-octet-AS (type 0x00/0x40), IPv4 (0x01/0x41) and four-octet-AS
  (0x02/0x42) layouts and fails loudly on a layout it does not know.
- MP_REACH next hop: `next_hop_tree` lists the global address then the link-local one when there are
  two; the model's `next_hop` tuple is compared with that list in order.
- AS4_PATH and AS4_AGGREGATOR carry the same Wireshark field names as AS_PATH and AGGREGATOR
  (`as_path_segment`, `aggregator_as` / `aggregator_origin`); the type code tells them apart. A
  segment's ASes are under `as_path_segment.as2` or `.as4` as Wireshark sized them.
- End-of-RIB: Wireshark has no field for it; an UPDATE is End-of-RIB for IPv4 when it is empty
  (lengths 0, no NLRI) and for (AFI, SAFI) when its only attribute is an empty MP_UNREACH_NLRI.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proto import prefix as pf
from proto.bgp.nlri import entry_wire
from tests.pcaplib import Direction, Framed, PcapError, bgp_messages

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "captures"
NAMES = sorted(p.stem for p in CAPTURES.glob("*.pcap"))

A = "bgp.update.path_attribute."


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def num(value: Any) -> int:
    return int(value, 0) if isinstance(value, str) and value.startswith("0x") else int(value)


def ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", "")) if text else b""


# ---------------------------------------------------------------- the capture, both views


@dataclass
class TsharkMessage:
    frame: int
    fields: dict[str, Any]


@dataclass
class Pair:
    """One BGP message: the bytes pcaplib framed and Wireshark's dissection of the same message."""

    capture: str
    direction: Direction
    framed: Framed
    shark: TsharkMessage

    @property
    def where(self) -> str:
        d = self.direction
        return f"{self.capture} frame {self.framed.frame} #{self.framed.index} {d[0]}:{d[1]}->{d[2]}:{d[3]}"


def tshark_messages(name: str) -> dict[Direction, list[TsharkMessage]]:
    frames = json.loads((CAPTURES / f"{name}.tshark.json").read_text())
    out: dict[Direction, list[TsharkMessage]] = {}
    for fr in sorted(frames, key=lambda f: f["frame"]):
        d = (ip(fr["src"]), fr["sport"], ip(fr["dst"]), fr["dport"])
        out.setdefault(d, []).extend(TsharkMessage(fr["frame"], m) for m in fr["bgp"])
    return out


def pairs(name: str) -> list[Pair]:
    framed = {(ip(d[0]), d[1], ip(d[2]), d[3]): msgs for d, msgs in bgp_messages(CAPTURES / f"{name}.pcap").items()}
    shark = tshark_messages(name)
    assert set(framed) == set(shark), f"{name}: directions differ: pcaplib {set(framed)} tshark {set(shark)}"
    out = []
    for d, msgs in framed.items():
        theirs = shark[d]
        assert len(msgs) == len(theirs), f"{name} {d}: pcaplib framed {len(msgs)}, Wireshark {len(theirs)}"
        for mine, t in zip(msgs, theirs):
            assert mine.frame == t.frame, f"{name} {d} #{mine.index}: frame {mine.frame} vs {t.frame}"
            out.append(Pair(name, d, mine, t))
    return out


# ---------------------------------------------------------------- Negotiated, from Wireshark's OPENs


def shark_caps(open_fields: dict[str, Any]) -> list[dict[str, Any]]:
    caps: list[dict[str, Any]] = []
    for param in as_list(open_fields.get("bgp.open.opt", {}).get("bgp.open.opt.param")):
        if num(param["bgp.open.opt.param.type"]) == 2:
            caps.extend(as_list(param.get("bgp.cap")))
    return caps


def shark_open_summary(open_fields: dict[str, Any]) -> dict[str, Any]:
    """What a speaker's OPEN offers, read from Wireshark's fields (not from the codec)."""
    caps = shark_caps(open_fields)
    codes = {num(c["bgp.cap.type"]) for c in caps}
    add_path: dict[tuple[int, int], int] = {}
    enh: set[tuple[int, int]] = set()
    for c in caps:
        if num(c["bgp.cap.type"]) == 69:
            for afi, safi, mode in zip(as_list(c["bgp.cap.ap.afi"]), as_list(c["bgp.cap.ap.safi"]),
                                       as_list(c["bgp.cap.ap.sendreceive"])):
                add_path[(num(afi), num(safi))] = num(mode)
        if num(c["bgp.cap.type"]) == 5:
            for afi, safi, nh in zip(as_list(c["bgp.cap.enh.afi"]), as_list(c["bgp.cap.enh.safi"]),
                                     as_list(c["bgp.cap.enh.nhafi"])):
                if num(nh) == 2:
                    enh.add((num(afi), num(safi)))
    return {"4as": 65 in codes, "extmsg": 6 in codes, "add_path": add_path, "enh": enh}


def negotiated_views(bgp: Any, sender: dict[str, Any], receiver: dict[str, Any]) -> tuple[Any, Any]:
    """(receiver's Negotiated, to decode what the sender sent; sender's, to encode it again)."""
    s, r = shark_open_summary(sender), shark_open_summary(receiver)
    shared = s["add_path"].keys() & r["add_path"].keys()
    carried = frozenset(f for f in shared if s["add_path"][f] in (2, 3) and r["add_path"][f] in (1, 3))
    returned = frozenset(f for f in shared if r["add_path"][f] in (2, 3) and s["add_path"][f] in (1, 3))
    common = {"four_octet_as": s["4as"] and r["4as"], "extended_message": s["extmsg"] and r["extmsg"],
              "extended_next_hop": frozenset(s["enh"] & r["enh"])}
    receive = bgp.Negotiated(add_path_receive=carried, add_path_send=returned, **common)
    send = bgp.Negotiated(add_path_receive=returned, add_path_send=carried, **common)
    return receive, send


@dataclass
class Decoded:
    pair: Pair
    message: Any
    receive: Any  # Negotiated of the receiving side
    send: Any  # Negotiated of the sending side


def decode_all(bgp: Any, name: str) -> list[Decoded]:
    ps = pairs(name)
    opens: dict[Direction, dict[str, Any]] = {}
    for p in ps:
        if p.framed.type == 1:
            opens.setdefault(p.direction, p.shark.fields)
    out = []
    for p in ps:
        d = p.direction
        back = (d[2], d[3], d[0], d[1])
        if p.framed.type == 1 or d not in opens or back not in opens:
            # an OPEN is read before anything is negotiated
            receive = send = bgp.Negotiated()
        else:
            receive, send = negotiated_views(bgp, opens[d], opens[back])
        out.append(Decoded(p, bgp.decode_message(p.framed.data, receive), receive, send))
    return out


# ---------------------------------------------------------------- field-by-field comparison


class Oracle:
    """Compares one decoded message with Wireshark; counts what it compared, by field name."""

    def __init__(self, bgp: Any) -> None:
        self.bgp = bgp
        self.compared: Counter[str] = Counter()

    def eq(self, what: str, mine: Any, theirs: Any, where: str) -> None:
        assert mine == theirs, f"{where}: {what}: proto {mine!r} != Wireshark {theirs!r}"
        self.compared[what] += 1

    def message(self, dec: Decoded) -> None:
        bgp, msg, t, w = self.bgp, dec.message, dec.pair.shark.fields, dec.pair.where
        data = dec.pair.framed.data
        self.eq("header.marker", data[:16], hexbytes(t["bgp.marker"]), w)
        self.eq("header.length", len(data), num(t["bgp.length"]), w)
        mtype = num(t["bgp.type"])
        kinds = {1: bgp.Open, 2: bgp.Update, 3: bgp.Notification, 4: bgp.Keepalive, 5: bgp.RouteRefresh}
        self.eq("header.type", type(msg), kinds[mtype], w)
        {1: self.open, 2: self.update, 3: self.notification, 4: lambda *_: None, 5: self.refresh}[mtype](msg, t, w)

    # --- OPEN

    def open(self, msg: Any, t: dict[str, Any], w: str) -> None:
        self.eq("open.version", msg.version, num(t["bgp.open.version"]), w)
        self.eq("open.my_as", msg.asn, num(t["bgp.open.myas"]), w)
        self.eq("open.hold_time", msg.hold_time, num(t["bgp.open.holdtime"]), w)
        self.eq("open.identifier", msg.router_id, ip(t["bgp.open.identifier"]), w)
        params = as_list(t.get("bgp.open.opt", {}).get("bgp.open.opt.param"))
        others = [(num(p["bgp.open.opt.param.type"]), p) for p in params if num(p["bgp.open.opt.param.type"]) != 2]
        self.eq("open.other_parameters.count", len(msg.other_parameters), len(others), w)
        for mine, (ptype, p) in zip(msg.other_parameters, others):
            self.eq("open.other_parameters.type", mine.type, ptype, w)
            self.eq("open.other_parameters.length", len(mine.value), num(p["bgp.open.opt.param.len"]), w)
        caps = shark_caps(t)
        self.eq("open.capabilities.count", len(msg.capabilities), len(caps), w)
        for i, (mine, c) in enumerate(zip(msg.capabilities, caps)):
            self.capability(mine, c, f"{w} capability #{i}")

    def capability(self, mine: Any, c: dict[str, Any], w: str) -> None:
        bgp = self.bgp
        code = num(c["bgp.cap.type"])
        length = num(c["bgp.cap.length"])
        if code == 1:
            self.eq("cap.multiprotocol", mine, bgp.MultiprotocolCap(num(c["bgp.cap.mp.afi"]), num(c["bgp.cap.mp.safi"])), w)
        elif code == 2:
            self.eq("cap.route_refresh", mine, bgp.RouteRefreshCap(), w)
        elif code == 5:
            entries = tuple(zip(map(num, as_list(c["bgp.cap.enh.afi"])), map(num, as_list(c["bgp.cap.enh.safi"])),
                                map(num, as_list(c["bgp.cap.enh.nhafi"]))))
            self.eq("cap.extended_next_hop", mine, bgp.ExtendedNextHopCap(entries), w)
        elif code == 6:
            self.eq("cap.extended_message", mine, bgp.ExtendedMessageCap(), w)
        elif code == 64:
            timers = c["bgp.cap.gr.timers_tree"]
            fams = tuple((num(a), num(s), bool(num(f) & 0x80)) for a, s, f in zip(
                as_list(c.get("bgp.cap.gr.afi")), as_list(c.get("bgp.cap.gr.safi")), as_list(c.get("bgp.cap.gr.flag"))))
            want = bgp.GracefulRestartCap(num(timers["bgp.cap.gr.timers.restart_time"]),
                                          bool(num(timers["bgp.cap.gr.timers.restart_flag"])),
                                          bool(num(timers["bgp.cap.gr.timers.notification_flag"])), fams)
            self.eq("cap.graceful_restart", mine, want, w)
        elif code == 65:
            self.eq("cap.four_octet_as", mine, bgp.FourOctetAsCap(num(c["bgp.cap.4as"])), w)
        elif code == 69:
            fams = tuple(zip(map(num, as_list(c["bgp.cap.ap.afi"])), map(num, as_list(c["bgp.cap.ap.safi"])),
                             map(num, as_list(c["bgp.cap.ap.sendreceive"]))))
            self.eq("cap.add_path", mine, bgp.AddPathCap(fams), w)
        elif code == 70:
            self.eq("cap.enhanced_route_refresh", mine, bgp.EnhancedRouteRefreshCap(), w)
        elif code == 73:
            want = bgp.FqdnCap(c["bgp.cap.orf.fqdn.hostname"], c.get("bgp.cap.orf.fqdn.domain_name", ""))
            self.eq("cap.fqdn", mine, want, w)
        else:
            value = hexbytes(c.get("bgp.cap.unknown", ""))
            assert len(value) == length, f"{w}: Wireshark did not show capability {code} as opaque"
            self.eq("cap.opaque", mine, bgp.Capability(code, value), w)

    # --- UPDATE

    @staticmethod
    def prefix(entry: dict[str, Any], address_key: str) -> bytes:
        length = num(entry["bgp.prefix_length"])
        network = ipaddress.ip_network((entry[address_key], length))
        path_id = entry.get("bgp.nlri_path_id")
        head = num(path_id).to_bytes(4, "big") if path_id is not None else b""
        return head + pf.from_network(network)

    def prefixes(self, block: Any, address_keys: tuple[str, ...]) -> list[bytes]:
        out = []
        if not isinstance(block, dict):
            return out
        for entries in block.values():
            for entry in as_list(entries):
                key = next(k for k in address_keys if k in entry)
                out.append(self.prefix(entry, key))
        return out

    def update(self, msg: Any, t: dict[str, Any], w: str) -> None:
        withdrawn = self.prefixes(t.get("bgp.update.withdrawn_routes"), ("bgp.withdrawn_prefix",))
        self.eq("update.withdrawn", list(msg.withdrawn), withdrawn, w)
        self.eq("update.withdrawn_routes.length", sum(len(entry_wire(p)) for p in msg.withdrawn),
                num(t["bgp.update.withdrawn_routes.length"]), w)
        nlri = self.prefixes(t.get("bgp.update.nlri"), ("bgp.nlri_prefix",))
        self.eq("update.nlri", list(msg.nlri), nlri, w)
        attrs = as_list(t.get("bgp.update.path_attributes", {}).get("bgp.update.path_attribute"))
        if getattr(msg, "layout", ()):
            layout = tuple((num(a[A + "type_code"]), num(a[A + "flags"])) for a in attrs)
            self.eq("update.attribute_order_and_flags", tuple(msg.layout), layout, w)
        seen: set[int] = set()
        pa = msg.attributes
        for a in attrs:
            code = num(a[A + "type_code"])
            seen.add(code)
            self.attribute(msg, pa, code, a, f"{w} attribute {code}")
        # nothing the codec reports may be missing from Wireshark's view
        fields = {1: "origin", 2: "as_path", 3: "next_hop", 4: "med", 5: "local_pref", 6: "atomic_aggregate",
                  7: "aggregator", 8: "communities", 9: "originator_id", 10: "cluster_list",
                  16: "extended_communities", 17: "as4_path", 18: "as4_aggregator", 32: "large_communities"}
        if pa is not None:
            invented = [c for c, f in fields.items() if getattr(pa, f) not in (None, False) and c not in seen]
            self.eq("update.no_extra_attributes", invented, [], w)
            self.eq("update.unknown_attributes", sorted(u.code for u in pa.unknown),
                    sorted(c for c in seen if c not in fields and c not in (14, 15)), w)
        self.eq("update.mp_reach_present", msg.mp_reach is not None, 14 in seen, w)
        self.eq("update.mp_unreach_present", msg.mp_unreach is not None, 15 in seen, w)
        self.eq("update.end_of_rib", msg.end_of_rib(), self.expected_eor(t, attrs, withdrawn, nlri), w)

    @staticmethod
    def expected_eor(t: dict[str, Any], attrs: list[dict[str, Any]], withdrawn: list[bytes],
                     nlri: list[bytes]) -> tuple[int, int] | None:
        if withdrawn or nlri:
            return None
        if not attrs:
            return (1, 1)
        if len(attrs) == 1 and num(attrs[0][A + "type_code"]) == 15 and not attrs[0].get(A + "mp_unreach_nlri"):
            return (num(attrs[0][A + "mp_unreach_nlri.afi"]), num(attrs[0][A + "mp_unreach_nlri.safi"]))
        return None

    def attribute(self, msg: Any, pa: Any, code: int, a: dict[str, Any], w: str) -> None:
        bgp = self.bgp
        if code == 14:
            reach = msg.mp_reach
            self.eq("mp_reach.afi", reach.afi, num(a[A + "mp_reach_nlri.afi"]), w)
            self.eq("mp_reach.safi", reach.safi, num(a[A + "mp_reach_nlri.safi"]), w)
            tree = a.get(A + "mp_reach_nlri.next_hop_tree", {})
            hops = [ip(v) for k, v in tree.items() if not k.endswith("_tree")]
            self.eq("mp_reach.next_hop", tuple(reach.next_hop), tuple(hops), w)
            self.eq("mp_reach.snpa", 0, num(a[A + "mp_reach_nlri.nbr_snpa"]), w)
            want = self.prefixes(a.get(A + "mp_reach_nlri"),
                                 ("bgp.mp_reach_nlri_ipv4_prefix", "bgp.mp_reach_nlri_ipv6_prefix"))
            self.eq("mp_reach.nlri", list(reach.nlri), want, w)
            return
        if code == 15:
            unreach = msg.mp_unreach
            self.eq("mp_unreach.afi", unreach.afi, num(a[A + "mp_unreach_nlri.afi"]), w)
            self.eq("mp_unreach.safi", unreach.safi, num(a[A + "mp_unreach_nlri.safi"]), w)
            want = self.prefixes(a.get(A + "mp_unreach_nlri"),
                                 ("bgp.mp_unreach_nlri_ipv4_prefix", "bgp.mp_unreach_nlri_ipv6_prefix"))
            self.eq("mp_unreach.withdrawn", list(unreach.withdrawn), want, w)
            return
        assert pa is not None, f"{w}: Wireshark shows attribute {code}, proto decoded no attribute set"
        if code == 1:
            self.eq("origin", pa.origin, num(a[A + "origin"]), w)
        elif code in (2, 17):
            segs = []
            for s in as_list(a.get(A + "as_path_segment")):
                asns = as_list(s.get(A + "as_path_segment.as4", s.get(A + "as_path_segment.as2")))
                want = bgp.AsPathSegment(num(s[A + "as_path_segment.type"]), tuple(num(x) for x in asns))
                self.eq("as_path.segment_length", len(want.asns), num(s[A + "as_path_segment.length"]), w)
                segs.append(want)
            self.eq("as_path" if code == 2 else "as4_path",
                    pa.as_path if code == 2 else pa.as4_path, tuple(segs), w)
        elif code == 3:
            self.eq("next_hop", pa.next_hop, ip(a[A + "next_hop"]), w)
        elif code == 4:
            self.eq("med", pa.med, num(a[A + "multi_exit_disc"]), w)
        elif code == 5:
            self.eq("local_pref", pa.local_pref, num(a[A + "local_pref"]), w)
        elif code == 6:
            self.eq("atomic_aggregate", pa.atomic_aggregate, True, w)
        elif code in (7, 18):
            want = (num(a[A + "aggregator_as"]), ip(a[A + "aggregator_origin"]))
            self.eq("aggregator" if code == 7 else "as4_aggregator",
                    pa.aggregator if code == 7 else pa.as4_aggregator, want, w)
        elif code == 8:
            block = a[A + "communities"]
            ordinary = [(num(c[A + "community_as"]) << 16) | num(c[A + "community_value"])
                        for c in as_list(block.get(A + "community"))]
            known = [num(v) for v in as_list(block.get(A + "community_wellknown"))]
            mine = list(pa.communities)
            self.eq("communities", sorted(mine), sorted(ordinary + known), w)
            self.eq("communities.order", [c for c in mine if c in ordinary], ordinary, w)
        elif code == 9:
            self.eq("originator_id", pa.originator_id, ip(a[A + "originator_id"]), w)
        elif code == 10:
            ids = [ip(x) for x in as_list(a["bgp.path_attribute.cluster_list"].get("bgp.path_attribute.cluster_id"))]
            self.eq("cluster_list", pa.cluster_list, tuple(ids), w)
        elif code == 16:
            want = tuple(self.ext_community(e, w) for e in as_list(a["bgp.ext_communities"]["bgp.ext_community"]))
            self.eq("extended_communities", pa.extended_communities, want, w)
        elif code == 32:
            want = tuple((num(x["bgp.large_communities.ga"]), num(x["bgp.large_communities.ldp1"]),
                          num(x["bgp.large_communities.ldp2"])) for x in as_list(a["bgp.large_communities_tree"]))
            self.eq("large_communities", pa.large_communities, want, w)
        else:
            mine = [u for u in pa.unknown if u.code == code]
            self.eq("unknown_attribute.count", len(mine), 1, w)
            self.eq("unknown_attribute.flags", mine[0].flags, num(a[A + "flags"]), w)
            self.eq("unknown_attribute.length", len(mine[0].value), num(a[A + "length"]), w)

    @staticmethod
    def ext_community(e: dict[str, Any], w: str) -> bytes:
        etype = num(e["bgp.ext_com.type"])
        stype = num(next(v for k, v in e.items() if k.startswith("bgp.ext_com.stype")))
        head = bytes((etype, stype))
        low = etype & 0x3F
        if low == 0x00:
            return head + num(e["bgp.ext_com.value_as2"]).to_bytes(2, "big") + num(e["bgp.ext_com.value_an4"]).to_bytes(4, "big")
        if low == 0x01:
            return head + ipaddress.IPv4Address(e["bgp.ext_com.value_IP4"]).packed + num(e["bgp.ext_com.value_an2"]).to_bytes(2, "big")
        if low == 0x02:
            return head + num(e["bgp.ext_com.value_as4"]).to_bytes(4, "big") + num(e["bgp.ext_com.value_an2"]).to_bytes(2, "big")
        raise AssertionError(f"{w}: no mapping from Wireshark fields for extended community type {etype:#x}")

    # --- NOTIFICATION, ROUTE-REFRESH

    def notification(self, msg: Any, t: dict[str, Any], w: str) -> None:
        self.eq("notification.code", msg.code, num(t["bgp.notify.major_error"]), w)
        minor = next(v for k, v in t.items() if k.startswith("bgp.notify.minor_error"))
        self.eq("notification.subcode", msg.subcode, num(minor), w)
        if "bgp.notify.communication" in t:
            # RFC 9003: one length octet, then UTF-8
            text = t["bgp.notify.communication"]
            self.eq("notification.shutdown_length", msg.data[0] if msg.data else None,
                    num(t["bgp.notify.communication_length"]), w)
            self.eq("notification.shutdown_message", msg.shutdown_message, text, w)
        elif "bgp.notify.error_data" in t:
            self.eq("notification.data", msg.data, hexbytes(t["bgp.notify.error_data"]), w)
        else:
            self.eq("notification.data", msg.data, b"", w)

    def refresh(self, msg: Any, t: dict[str, Any], w: str) -> None:
        self.eq("route_refresh.afi", msg.afi, num(t["bgp.route_refresh.afi"]), w)
        self.eq("route_refresh.safi", msg.safi, num(t["bgp.route_refresh.safi"]), w)
        self.eq("route_refresh.subtype", msg.subtype, num(t["bgp.route_refresh.subtype"]), w)


# ---------------------------------------------------------------- tests


def test_captures_present() -> None:
    assert NAMES, f"no captures under {CAPTURES}: run scripts/make_captures.py as root"
    total = sum(p.stat().st_size for p in CAPTURES.iterdir())
    assert total < 2_000_000, f"captures take {total} bytes"


@pytest.mark.parametrize("name", NAMES)
def test_pcaplib_frames_what_wireshark_dissects(name: str) -> None:
    """Needs no codec: the reassembly and framing agree with Wireshark on every message."""
    ps = pairs(name)
    assert ps
    for p in ps:
        assert p.framed.type == num(p.shark.fields["bgp.type"]), p.where
        assert len(p.framed.data) == num(p.shark.fields["bgp.length"]), p.where


def _synthetic_pcap(path: Path, segments: list[tuple[int, int, bytes]]) -> None:
    """A pcap of Ethernet/IPv4/TCP frames 10.9.0.1:40000 -> 10.9.0.2:179: (seq, flags, payload)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, (seq, flags, payload) in enumerate(segments):
        tcp = struct.pack("!HHIIHHHH", 40000, 179, seq, 0, (5 << 12) | flags, 65535, 0, 0) + payload
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                          bytes((10, 9, 0, 1)), bytes((10, 9, 0, 2)))
        frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + iph + tcp
        out.append(struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def test_pcaplib_reassembles_out_of_order_and_retransmitted_segments(tmp_path: Path) -> None:
    keepalive = b"\xff" * 16 + b"\x00\x13\x04"
    update = b"\xff" * 16 + b"\x00\x17\x02" + b"\x00" * 4
    data = keepalive + update
    pcap = tmp_path / "x.pcap"
    # frame 1 SYN; 2 the tail first; 3 the head, filling the gap; 4 a retransmission of the head
    _synthetic_pcap(pcap, [(999, 0x02, b""), (1000 + 10, 0x18, data[10:]), (1000, 0x18, data[:10]),
                           (1000, 0x18, data[:10])])
    msgs = bgp_messages(pcap)
    assert list(msgs) == [("10.9.0.1", 40000, "10.9.0.2", 179)]
    framed = next(iter(msgs.values()))
    assert [m.data for m in framed] == [keepalive, update]
    assert [m.frame for m in framed] == [3, 3]


def test_pcaplib_refuses_a_stream_with_a_hole(tmp_path: Path) -> None:
    pcap = tmp_path / "x.pcap"
    _synthetic_pcap(pcap, [(999, 0x02, b""), (1010, 0x18, b"\xff" * 9)])
    with pytest.raises(PcapError, match="gap"):
        bgp_messages(pcap)


@pytest.fixture(scope="module")
def bgp() -> Any:
    import proto.bgp

    return proto.bgp


@pytest.fixture(scope="module")
def decoded(bgp: Any) -> dict[str, list[Decoded]]:
    """Every capture decoded once for the whole module."""
    return {name: decode_all(bgp, name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_every_message_matches_wireshark(bgp: Any, decoded: dict[str, list[Decoded]], name: str) -> None:
    oracle = Oracle(bgp)
    for dec in decoded[name]:
        oracle.message(dec)
    assert sum(oracle.compared.values()) > len(decoded[name])


def open_parts(data: bytes) -> tuple[bytes, bytes, list[tuple[int, bytes]]]:
    """A classic-form OPEN split by hand: fixed fields, all capability TLVs joined, other parameters."""
    body = data[19:]
    fixed, plen, off = body[:9], body[9], 10
    caps, others = b"", []
    while off < 10 + plen:
        ptype, length = body[off], body[off + 1]
        value = body[off + 2:off + 2 + length]
        if ptype == 2:
            caps += value
        else:
            others.append((ptype, value))
        off += 2 + length
    return fixed, caps, others


def spread_capabilities(data: bytes) -> bool:
    """True for an OPEN whose sender put its capabilities in more than one parameter (FRR does)."""
    body = data[19:]
    if data[18] != 1 or body[9] == 255:
        return False
    count, off = 0, 10
    while off < 10 + body[9]:
        count += body[off] == 2
        off += 2 + body[off + 1]
    return count > 1


@pytest.mark.parametrize("name", NAMES)
def test_reencoding_gives_the_captured_bytes(bgp: Any, decoded: dict[str, list[Decoded]], name: str) -> None:
    """Every message re-encodes to its captured bytes, OPENs that spread their capabilities over
    several optional parameters (FRR) included."""
    wrong = []
    checked = 0
    for dec in decoded[name]:
        data = dec.pair.framed.data
        again = bgp.encode_message(dec.message, dec.send)
        checked += 1
        if again != data:
            wrong.append(f"{dec.pair.where}: re-encoded {again.hex()}\n{' ' * 20}captured   {data.hex()}")
    assert checked
    assert not wrong, f"{len(wrong)} of {checked} messages re-encode differently:\n" + "\n".join(wrong)


def test_captures_include_an_open_with_spread_capabilities(decoded: dict[str, list[Decoded]]) -> None:
    spread = [dec for decs in decoded.values() for dec in decs if spread_capabilities(dec.pair.framed.data)]
    assert spread, "no OPEN with capabilities spread over several parameters captured"


@pytest.mark.parametrize("name", NAMES)
def test_negotiation_agrees_with_the_codec(bgp: Any, decoded: dict[str, list[Decoded]], name: str) -> None:
    """The Negotiated derived here from Wireshark's OPEN fields is what proto.bgp.negotiate says."""
    opens = {d.pair.direction: d.message for d in decoded[name] if isinstance(d.message, bgp.Open)}
    checked = 0
    for dec in decoded[name]:
        d = dec.pair.direction
        back = (d[2], d[3], d[0], d[1])
        if isinstance(dec.message, bgp.Open) or back not in opens:
            continue
        assert bgp.negotiate(opens[back], opens[d]) == dec.receive, dec.pair.where
        assert bgp.negotiate(opens[d], opens[back]) == dec.send, dec.pair.where
        checked += 1
    assert checked


def test_captures_cover_what_the_issue_lists(bgp: Any, decoded: dict[str, list[Decoded]]) -> None:
    """Every field kind the oracle is meant to check was compared at least once across the captures."""
    everything = [dec for decs in decoded.values() for dec in decs]
    oracle = Oracle(bgp)
    for dec in everything:
        oracle.message(dec)
    need = {
        "open.hold_time", "cap.multiprotocol", "cap.route_refresh", "cap.enhanced_route_refresh",
        "cap.graceful_restart", "cap.four_octet_as", "cap.add_path", "cap.extended_next_hop",
        "cap.fqdn", "cap.opaque", "update.withdrawn", "update.nlri", "origin", "as_path", "next_hop",
        "med", "local_pref", "atomic_aggregate", "aggregator", "communities", "large_communities",
        "as4_path", "as4_aggregator", "originator_id", "cluster_list",
        "extended_communities", "mp_reach.next_hop", "mp_reach.nlri", "mp_unreach.withdrawn",
        "notification.code", "notification.subcode", "notification.shutdown_message",
        "route_refresh.afi", "route_refresh.subtype",
    }
    missing = sorted(n for n in need if not oracle.compared[n])
    assert not missing, f"captures never exercised: {missing}"
    kinds = Counter(type(dec.message).__name__ for dec in everything)
    assert set(kinds) == {"Open", "Update", "Notification", "Keepalive", "RouteRefresh"}, kinds
    updates = [dec for dec in everything if isinstance(dec.message, bgp.Update)]
    eors = {dec.message.end_of_rib() for dec in updates}
    assert {(1, 1), (2, 1)} <= eors, f"End-of-RIB for IPv4 and IPv6 not both captured: {eors}"
    subtypes = {dec.message.subtype for dec in everything if isinstance(dec.message, bgp.RouteRefresh)}
    assert subtypes == {0, 1, 2}, f"ROUTE-REFRESH subtypes captured: {subtypes}"
    paths = [p for dec in updates if dec.receive.add_path_receive
             for p in dec.message.nlri + (dec.message.mp_reach.nlri if dec.message.mp_reach else [])]
    assert paths, "no ADD-PATH NLRI captured"
    two_octet = [dec for dec in updates if not dec.receive.four_octet_as and dec.message.attributes
                 and dec.message.attributes.as_path]
    assert two_octet, "no 2-octet AS_PATH captured"
    seg_types = {seg.type for dec in updates if dec.message.attributes and dec.message.attributes.as_path
                 for seg in dec.message.attributes.as_path}
    assert {1, 2} <= seg_types, f"AS_SET and AS_SEQUENCE not both captured: {seg_types}"
