#!/usr/bin/env python3
"""Re-create the BGP captures the oracle test replays (tests/data/captures/).

Each capture is one real session between two daemons in network namespaces joined by a veth, recorded
with tcpdump on the veth, then dissected by Wireshark (`tshark -T json`). The JSON is trimmed to what
the oracle compares: frame number, TCP stream, addresses, ports, sequence numbers and the BGP layer.

  bird2_gobgp  BIRD 2 (AS 65000) <-> GoBGP (AS 65000), iBGP over IPv4, IPv4 + IPv6 unicast, ADD-PATH,
               graceful restart; communities, large and extended communities, MED, LOCAL_PREF;
               withdrawals (IPv4 and MP_UNREACH), End-of-RIB, BIRD's ROUTE-REFRESH (GoBGP sends none), BIRD's
               administrative shutdown (Cease/2 with a shutdown communication).
  frr_bird2    FRR (AS 4200000001) <-> BIRD 2 (AS 65000), eBGP over IPv6 with IPv4 NLRI over IPv6
               next hops (RFC 8950), global + link-local next hops, 4-octet AS, ADD-PATH, FQDN,
               enhanced route refresh (BoRR/EoRR), an aggregate (ATOMIC_AGGREGATE, AGGREGATOR),
               withdrawals, and FRR's administrative shutdown with a message.
  bird16_bird2_rr  BIRD 1.6 (AS 65010, no 4-octet AS capability, Calico's line) as route-reflector
               client of BIRD 2, which reflects GoBGP's routes: 2-octet AS_PATH with AS_TRANS and an
               AS_SET, AS4_PATH, AGGREGATOR + AS4_AGGREGATOR, ORIGINATOR_ID, CLUSTER_LIST; ROUTE-REFRESH
               both ways, BIRD 1.6's administrative shutdown.

Run as root from the repository root: `.venv/bin/python scripts/make_captures.py [name ...]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.daemons import Bird2, Bird16, DaemonNeighbor, Frr, GoBgp, Route, poll  # noqa: E402
from lab.netns import Netns, NetnsSet, have_root, missing_tools  # noqa: E402
from tests.pcaplib import PcapError, bgp_messages  # noqa: E402

OUT = REPO / "tests" / "data" / "captures"
PREFIX = "to"  # namespace name prefix of this script

SHUTDOWN_BIRD = "tortie capture: planned maintenance"
SHUTDOWN_FRR = "tortie capture: FRR goes down \u2192 bye"  # non-ASCII on purpose (UTF-8, RFC 9003)


class Capture:
    """tcpdump on one interface inside a namespace, writing a pcap as packets arrive (-U)."""

    def __init__(self, nsset: NetnsSet, ns: Netns, ifname: str, path: Path) -> None:
        self.path = path
        self.log = path.with_suffix(".tcpdump.log")
        with open(self.log, "wb") as log:
            self.proc = nsset.spawn(ns, "tcpdump", "-i", ifname, "-w", str(path), "-U", "-s", "0", "-n",
                                    "tcp", "port", "179", stdout=log, stderr=subprocess.STDOUT)
        if not poll(lambda: "listening on" in self.log.read_text(), 10, 0.05):
            raise RuntimeError(f"tcpdump did not start: {self.log.read_text()}")

    def messages(self) -> dict[tuple[str, int, str, int], list[int]]:
        """BGP message types seen so far, per direction (empty while the file is mid-write)."""
        try:
            return {d: [m.type for m in msgs] for d, msgs in bgp_messages(self.path).items()}
        except (PcapError, OSError, IndexError):
            return {}

    def wait_for(self, what: str, check: Callable[[dict[tuple[str, int, str, int], list[int]]], bool],
                 timeout: float = 20) -> None:
        if not poll(lambda: check(self.messages()), timeout):
            raise RuntimeError(f"capture never showed {what}: {self.messages()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)  # tcpdump flushes and closes the file on SIGINT
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def count_from(msgs: dict[tuple[str, int, str, int], list[int]], src: str, mtype: int) -> int:
    return sum(types.count(mtype) for d, types in msgs.items() if d[0] == src)


def two_namespaces(nsset: NetnsSet) -> tuple[Netns, Netns]:
    a, b = nsset.add("a"), nsset.add("b")
    for ns in (a, b):
        # no duplicate address detection: link-local next hops must be usable at once
        ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    nsset.veth(a, "vetha", b, "vethb")
    a.ip("addr", "add", "10.0.0.1/24", "dev", "vetha")
    b.ip("addr", "add", "10.0.0.2/24", "dev", "vethb")
    a.ip("addr", "add", "fd00::1/64", "dev", "vetha", "nodad")
    b.ip("addr", "add", "fd00::2/64", "dev", "vethb", "nodad")
    return a, b


def capture_bird2_gobgp(nsset: NetnsSet, work: Path, pcap: Path) -> None:
    a, b = two_namespaces(nsset)
    bird_routes = [
        Route("10.1.0.0/24", communities=((65000, 1), (65000, 2)), large_communities=((65000, 1, 2),),
              ext_communities=(("rt", 65000, 100),), med=10),
        Route("10.1.1.0/24"),
        Route("10.1.2.0/25", ext_communities=(("ro", 65000, 7), ("rt", 65000, 200)), local_pref=200),
        # same attributes as 10.1.1.0/24: several NLRI per UPDATE, prefix lengths off octet bounds
        Route("10.1.4.64/26"),
        Route("10.1.5.1/32"),
        Route("fd01::/64", communities=((65000, 6),), large_communities=((65000, 6, 6),)),
        Route("fd01:1::/64"),
        Route("fd01:2::40/122"),
        Route("fd01:3::1/128"),
    ]
    gobgp_routes = [
        Route("10.2.0.0/24", next_hop="10.0.0.2", communities=((65001, 1),),
              large_communities=((65001, 1, 2), (4200000001, 3, 4)), ext_communities=(("rt", 65001, 100),),
              med=5, local_pref=150),
        Route("10.2.1.0/24", next_hop="10.0.0.2"),
        Route("fd02::/64", next_hop="fd00::2", communities=((65001, 6),)),
        Route("fd02:1::/64", next_hop="fd00::2"),
    ]
    common = {"families": ("ipv4", "ipv6"), "add_path": "both", "graceful_restart": True}
    bird = Bird2(a, work / "bird2", router_id="10.0.0.1", asn=65000, routes=bird_routes, owner=nsset,
                 neighbors=[DaemonNeighbor("10.0.0.2", 65000, **common)])  # type: ignore[arg-type]
    gobgp = GoBgp(b, work / "gobgp", router_id="10.0.0.2", asn=65000, routes=gobgp_routes, owner=nsset,
                  neighbors=[DaemonNeighbor("10.0.0.1", 65000, passive=True, **common)])  # type: ignore[arg-type]
    cap = Capture(nsset, b, "vethb", pcap)
    try:
        gobgp.start()  # routes go into its RIB before the session, so they travel in the first UPDATEs
        bird.start()
        bird.wait_established("10.0.0.2")
        gobgp.wait_established("10.0.0.1")
        bird.wait_prefixes([r.prefix for r in gobgp_routes])
        gobgp.wait_prefixes([r.prefix for r in bird_routes])
        # an UPDATE for a route added while the session is up
        gobgp.add_route(Route("10.2.2.0/24", next_hop="10.0.0.2", communities=((65001, 9),)))
        bird.wait_prefixes(["10.2.2.0/24"])
        bird.withdraw_route("10.1.1.0/24")
        bird.withdraw_route("fd01:1::/64")
        gobgp.withdraw_route("10.2.1.0/24")
        gobgp.withdraw_route("fd02:1::/64")
        gobgp.wait_prefixes(["10.1.1.0/24", "fd01:1::/64"], present=False)
        bird.wait_prefixes(["10.2.1.0/24", "fd02:1::/64"], present=False)
        bird.refresh_in("10.0.0.2")
        cap.wait_for("ROUTE-REFRESH from BIRD", lambda m: count_from(m, "10.0.0.1", 5) >= 1)
        # GoBGP 3.10 keeps its Adj-RIB-In and never sends ROUTE-REFRESH itself (softresetin re-runs
        # its import policy locally), so the other direction is covered by the FRR capture.
        bird.shutdown_neighbor("10.0.0.2", SHUTDOWN_BIRD)
        cap.wait_for("NOTIFICATION from BIRD", lambda m: count_from(m, "10.0.0.1", 3) >= 1)
    finally:
        cap.stop()
        bird.stop()
        gobgp.stop()


def capture_frr_bird2(nsset: NetnsSet, work: Path, pcap: Path) -> None:
    a, b = two_namespaces(nsset)
    frr_routes = [
        Route("10.3.0.0/24", communities=((65000, 3),), large_communities=((4200000001, 0, 1),),
              ext_communities=(("rt", 65000, 300),), med=30),
        Route("10.3.1.0/24"),
        Route("fd03::/64", large_communities=((4200000001, 6, 1),), ext_communities=(("ro", 65000, 3),)),
        Route("fd03:1::/64"),
    ]
    bird_routes = [
        Route("10.1.0.0/24", communities=((65000, 1),), large_communities=((65000, 1, 2),),
              ext_communities=(("rt", 65000, 100),)),
        Route("10.1.1.0/24"),
        Route("fd01::/64", communities=((65000, 6), (65535, 65281))),
        Route("fd01:1::/64"),
    ]
    common = {"families": ("ipv4", "ipv6"), "add_path": "both", "graceful_restart": True,
              "extended_next_hop": True}
    frr = Frr(a, work / "frr", router_id="10.0.0.1", asn=4200000001, routes=frr_routes, owner=nsset,
              neighbors=[DaemonNeighbor("fd00::2", 65000, **common)])  # type: ignore[arg-type]
    bird = Bird2(b, work / "bird2", router_id="10.0.0.2", asn=65000, routes=bird_routes, owner=nsset,
                 neighbors=[DaemonNeighbor("fd00::1", 4200000001, passive=True, **common)])  # type: ignore[arg-type]
    cap = Capture(nsset, b, "vethb", pcap)
    try:
        bird.start()
        frr.start()
        frr.wait_established("fd00::2")
        bird.wait_established("fd00::1")
        frr.wait_prefixes([r.prefix for r in bird_routes])
        bird.wait_prefixes([r.prefix for r in frr_routes])
        # an aggregate adds ATOMIC_AGGREGATE and AGGREGATOR to what FRR sends
        frr.configure(f"router bgp {frr.asn}", "address-family ipv4 unicast", "aggregate-address 10.3.0.0/16")
        bird.wait_prefixes(["10.3.0.0/16"])
        frr.withdraw_route("10.3.1.0/24")
        frr.withdraw_route("fd03:1::/64")
        bird.withdraw_route("10.1.1.0/24")
        bird.withdraw_route("fd01:1::/64")
        bird.wait_prefixes(["10.3.1.0/24", "fd03:1::/64"], present=False)
        frr.wait_prefixes(["10.1.1.0/24", "fd01:1::/64"], present=False)
        bird.refresh_in("fd00::1")
        cap.wait_for("ROUTE-REFRESH from BIRD", lambda m: count_from(m, "fd00::2", 5) >= 1)
        frr.refresh_in("fd00::2")
        cap.wait_for("ROUTE-REFRESH from FRR", lambda m: count_from(m, "fd00::1", 5) >= 1)
        # with enhanced route refresh each answer is framed by BoRR and EoRR (ROUTE-REFRESH subtypes)
        cap.wait_for("BoRR/EoRR both ways",
                     lambda m: count_from(m, "fd00::1", 5) >= 3 and count_from(m, "fd00::2", 5) >= 3, 15)
        frr.shutdown_neighbor("fd00::2", SHUTDOWN_FRR)
        cap.wait_for("NOTIFICATION from FRR", lambda m: count_from(m, "fd00::1", 3) >= 1)
    finally:
        cap.stop()
        frr.stop()
        bird.stop()


def capture_bird16_bird2_rr(nsset: NetnsSet, work: Path, pcap: Path) -> None:
    """BIRD 2 reflects GoBGP's routes to a BIRD 1.6 client that offers no 4-octet AS capability."""
    a, b = two_namespaces(nsset)
    c = nsset.add("c")
    c.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    nsset.veth(b, "vethbc", c, "vethc")
    b.ip("addr", "add", "10.0.1.2/24", "dev", "vethbc")
    c.ip("addr", "add", "10.0.1.3/24", "dev", "vethc")
    bird16 = Bird16(a, work / "bird16", router_id="10.0.0.1", asn=65010, owner=nsset,
                    routes=[Route("10.5.0.0/24", communities=((65010, 5),)), Route("10.5.1.0/24")],
                    neighbors=[DaemonNeighbor("10.0.0.2", 65010, four_octet_as=False, add_path="both",
                                        graceful_restart=True)])
    bird2 = Bird2(b, work / "bird2", router_id="10.0.0.2", asn=65010, cluster_id="1.1.1.1", owner=nsset,
                  routes=[Route("10.6.0.0/24", large_communities=((4200000002, 1, 1),))],
                  neighbors=[DaemonNeighbor("10.0.0.1", 65010, passive=True, rr_client=True, add_path="both",
                                      graceful_restart=True),
                             DaemonNeighbor("10.0.1.3", 65010, passive=True)])
    gobgp = GoBgp(c, work / "gobgp", router_id="10.0.1.3", asn=65010, owner=nsset,
                  neighbors=[DaemonNeighbor("10.0.1.2", 65010)])
    cap = Capture(nsset, b, "vethb", pcap)
    try:
        bird2.start()
        gobgp.start()
        bird16.start()
        bird16.wait_established("10.0.0.2")
        gobgp.wait_established("10.0.1.2")
        bird2.wait_prefixes(["10.5.0.0/24", "10.5.1.0/24"])
        bird16.wait_prefixes(["10.6.0.0/24"])
        # an AS_PATH with an AS_SET and a 4-octet AS, and a 4-octet AGGREGATOR: towards the 2-octet
        # client these become AS_TRANS plus AS4_PATH / AS4_AGGREGATOR
        gobgp.cli("global", "rib", "add", "-a", "ipv4", "10.4.0.0/24", "nexthop", "10.0.1.3",
                  "aspath", "4200000009 {65200,65300}", "aggregator", "4200000009:10.9.9.9",
                  "community", "65010:4", check=True)
        gobgp.cli("global", "rib", "add", "-a", "ipv4", "10.4.1.0/24", "nexthop", "10.0.1.3",
                  "aspath", "65100 65101", "med", "7", check=True)
        bird2.wait_prefixes(["10.4.0.0/24", "10.4.1.0/24"])
        bird16.wait_prefixes(["10.4.0.0/24", "10.4.1.0/24"])
        gobgp.cli("global", "rib", "del", "-a", "ipv4", "10.4.1.0/24", check=True)
        bird16.wait_prefixes(["10.4.1.0/24"], present=False)
        bird16.withdraw_route("10.5.1.0/24")
        bird2.wait_prefixes(["10.5.1.0/24"], present=False)
        bird2.refresh_in("10.0.0.1")
        cap.wait_for("ROUTE-REFRESH from BIRD 2", lambda m: count_from(m, "10.0.0.2", 5) >= 1)
        bird16.refresh_in("10.0.0.2")
        cap.wait_for("ROUTE-REFRESH from BIRD 1.6", lambda m: count_from(m, "10.0.0.1", 5) >= 1)
        bird16.shutdown_neighbor("10.0.0.2", SHUTDOWN_BIRD)
        cap.wait_for("NOTIFICATION from BIRD 1.6", lambda m: count_from(m, "10.0.0.1", 3) >= 1)
    finally:
        cap.stop()
        bird16.stop()
        bird2.stop()
        gobgp.stop()


CAPTURES: dict[str, Callable[[NetnsSet, Path, Path], None]] = {
    "bird2_gobgp": capture_bird2_gobgp,
    "frr_bird2": capture_frr_bird2,
    "bird16_bird2_rr": capture_bird16_bird2_rr,
}


def _first(layer: dict[str, object], key: str) -> object:
    value = layer.get(key)
    return value[0] if isinstance(value, list) else value


def trim_tshark(pcap: Path) -> list[dict[str, object]]:
    """tshark's dissection of every frame holding BGP, cut down to the fields the oracle uses."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-n", "-o", "tcp.desegment_tcp_streams:TRUE", "-d", "tcp.port==179,bgp",
         "-Y", "bgp", "-T", "json", "--no-duplicate-keys"],
        check=True, capture_output=True, text=True).stdout
    frames = []
    for pkt in json.loads(out):
        layers = pkt["_source"]["layers"]
        ip = layers.get("ip") or layers.get("ipv6")
        tcp = layers["tcp"]
        ipkey = "ip" if "ip" in layers else "ipv6"
        bgp = layers["bgp"]
        frames.append({
            "frame": int(_first(layers["frame"], "frame.number")),  # type: ignore[arg-type]
            "stream": int(_first(tcp, "tcp.stream")),  # type: ignore[arg-type]
            "src": _first(ip, f"{ipkey}.src"),  # type: ignore[arg-type]
            "dst": _first(ip, f"{ipkey}.dst"),  # type: ignore[arg-type]
            "sport": int(_first(tcp, "tcp.srcport")),  # type: ignore[arg-type]
            "dport": int(_first(tcp, "tcp.dstport")),  # type: ignore[arg-type]
            "seq": int(_first(tcp, "tcp.seq_raw")),  # type: ignore[arg-type]
            # one frame can end several BGP messages: always a list, in wire order
            "bgp": bgp if isinstance(bgp, list) else [bgp],
        })
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(CAPTURES), help="captures to make (default: all)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not have_root():
        print("needs root (network namespaces, tcpdump)", file=sys.stderr)
        return 2
    missing = missing_tools("tcpdump", "tshark", "bird", "birdc", "gobgpd", "gobgp", "vtysh")
    if missing:
        print(f"missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        with tempfile.TemporaryDirectory(prefix=f"capture-{name}-") as tmp, NetnsSet(prefix=PREFIX) as nsset:
            work = Path(tmp)
            pcap = work / f"{name}.pcap"
            CAPTURES[name](nsset, work, pcap)
            msgs = bgp_messages(pcap)  # refuse to store a capture that does not frame cleanly
            frames = trim_tshark(pcap)
            shutil.copy(pcap, args.out / f"{name}.pcap")
            (args.out / f"{name}.tshark.json").write_text(json.dumps(frames, indent=1, ensure_ascii=False) + "\n")
            summary = {f"{d[0]}:{d[1]}->{d[2]}:{d[3]}": len(m) for d, m in msgs.items()}
            print(f"{name}: {pcap.stat().st_size} bytes, {len(frames)} BGP frames, messages {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
