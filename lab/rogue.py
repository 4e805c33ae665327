"""The chaos lab's rogue peer: a BIRD 2 outside the cluster, in its own namespace on the lab's
external subnet, peering over eBGP with every host (the cluster's `chaos-rogue` BGPPeer, which
limits what each node accepts from it with `maxPrefixes`).

It always sends `BASE` routes (within the limit). `flood(host)` enables a static protocol exported
to that host's session only: `FLOOD` more routes, over the limit, so that host alone resets the
session with Cease/1; `calm(host)` disables it again. The prefixes sit inside the pool (so tortie's
import policy accepts and counts them) but far from any block of the lab's pods.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from lab.daemons import Bird2, DaemonNeighbor

ROGUE_ADDRESS = "203.0.113.20/24"
ROGUE_ASN = 64999
CLUSTER_ASN = 64512
PEER_NAME = "chaos-rogue"
BASE = [f"192.168.240.{i * 64}/26" for i in range(2)]
FLOOD = 24


def flood_prefixes(index: int) -> list[str]:
    return [f"192.168.{241 + index}.{j * 8}/29" for j in range(FLOOD)]


class RogueBird(Bird2):
    """BIRD 2 with one base static protocol and, per host, a flood protocol (disabled at start)."""

    def __init__(self, *args: object, hosts: list[tuple[str, str]], **kwargs: object) -> None:
        self.hosts = hosts  # (name, address without length)
        neighbors = [DaemonNeighbor(addr, CLUSTER_ASN, multihop=True) for _, addr in hosts]
        super().__init__(*args, neighbors=neighbors, **kwargs)  # type: ignore[arg-type]

    def _flood_proto(self, host: str) -> str:
        return "rogue_flood_" + re.sub(r"[^0-9A-Za-z]", "_", host)

    def write_config(self) -> None:
        c = [f"router id {self.router_id};", f'log "{self.workdir / "bird.log"}" all;',
             "protocol device { scan time 10; }",
             "protocol static rogue_base {", "  ipv4;", *(f"  route {p} blackhole;" for p in BASE), "}"]
        for i, (host, _) in enumerate(self.hosts):
            c += [f"protocol static {self._flood_proto(host)} {{", "  disabled;", "  ipv4;",
                  *(f"  route {p} blackhole;" for p in flood_prefixes(i)), "}"]
        for n, (host, _) in zip(self.neighbors, self.hosts, strict=True):
            c += [f"protocol bgp {n.ident} {{", *self._bgp_common(n), "  ipv4 {", "    import none;",
                  f'    export where proto = "base" || proto = "{self._flood_proto(host)}";', "  };", "}"]
        self.conf.write_text("\n".join(c) + "\n")

    def flood(self, host: str) -> None:
        out = self.cli("enable", self._flood_proto(host))
        if "enabled" not in out:
            raise RuntimeError(f"birdc enable {self._flood_proto(host)}: {out}")

    def calm(self, host: str) -> None:
        out = self.cli("disable", self._flood_proto(host))
        if "disabled" not in out:
            raise RuntimeError(f"birdc disable {self._flood_proto(host)}: {out}")


def rogue_address() -> str:
    return str(ipaddress.ip_interface(ROGUE_ADDRESS).ip)


def start_rogue(topo: object, workdir: Path) -> RogueBird:
    """Attach a `rogue` namespace to the lab's external subnet and start BIRD in it."""
    from lab.topology import LabTopology

    assert isinstance(topo, LabTopology)
    if "rogue" not in topo.state.namespaces:
        topo._attach(topo.ns("fabric"), "rogue", ROGUE_ADDRESS, "ext")
    hosts = [(h.name, h.address.split("/")[0]) for h in topo.scenario.hosts]
    bird = RogueBird(topo.ns("rogue"), workdir, router_id=rogue_address(), asn=ROGUE_ASN, hosts=hosts)
    bird.start()
    for pid in bird.pids:
        topo.state.pids[f"bird-rogue-{pid}"] = pid
    topo.state.save(topo.state_dir)
    return bird
