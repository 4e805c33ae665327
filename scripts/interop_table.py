#!/usr/bin/env python3
"""Generate docs/interop.md: daemon x scenario, from one run of the interop tier.

    scripts/interop_table.py [RESULTS.json] [docs/interop.md]

`make interop-table` runs the whole interop tier once and then this; the tier's conftest writes each
run's results with its date and commit to build/interop/results.json, and a test run never touches
docs/interop.md. The table is that one run: a run that did not cover every scenario and daemon
shows "-" in the cells it left out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DAEMONS = ("bird16", "bird2", "gobgp", "frr")
DAEMON_NAMES = {"bird16": "BIRD 1.6.8", "bird2": "BIRD 2.0.12", "gobgp": "GoBGP 3.10", "frr": "FRR 8.4"}
# the order of issue 8's list, then issue 16's, then anything else alphabetically
ORDER = ("ibgp-mesh", "ebgp-tor", "ebgp-tor-4octet", "md5-match", "md5-mismatch", "refresh-tortie-asks",
         "refresh-daemon-asks", "shutdown-tortie-to-daemon", "shutdown-daemon-to-tortie", "max-prefixes",
         "rr-tortie-reflects", "rr-daemon-reflects", "gr-tortie-restarts", "gr-daemon-restarts", "scale-100k",
         "bgppeer-local-as", "bgppeer-allow-local-as", "bgppeer-ttl-security", "bgppeer-keepalive-time",
         "bgppeer-next-hop-mode", "bgppeer-reachable-by", "bgpfilter-communities",
         # issue 16's
         "bfd-tortie-detects", "bfd-daemon-detects", "bfd-auth", "ownership-daemon-hijacks")
WHAT = {
    "ibgp-mesh": "daemon as a node-to-node mesh Node (IPv4 + IPv6 sessions): Established, capabilities on both "
                 "sides (4-octet AS, route refresh, GR, ADD-PATH, family), blocks and withdrawals both ways",
    "ebgp-tor": "daemon as ToR (AS 65001, tortie 64512): next hop self, AS_PATH both ways, pool policy on import",
    "ebgp-tor-4octet": "the same with AS 4200000001 (ToR) and 4200000002 (tortie)",
    "md5-match": "TCP MD5, same password (tortie's from a password file): Established, routes flow",
    "md5-mismatch": "TCP MD5, different passwords: never OpenSent; tortie's last_error names the cause",
    "refresh-tortie-asks": "tortie's `refresh`: the daemon sends its table again (UPDATE count grows)",
    "refresh-daemon-asks": "the daemon's CLI refresh: tortie counts the ROUTE-REFRESH and sends its table again",
    "shutdown-tortie-to-daemon": "tortie's `shutdown` with a message: the daemon shows it; `enable` restores",
    "shutdown-daemon-to-tortie": "the daemon's shutdown with a message: in tortie's last_notification_received",
    "max-prefixes": "maxPrefixes 3, daemon sends 6: Cease/1, the daemon shows why, tortie retries after 30 s",
    "rr-tortie-reflects": "tortie reflector, daemon + tortie clients: ORIGINATOR_ID, CLUSTER_LIST, next hop kept",
    "rr-daemon-reflects": "daemon reflector, two tortie clients: the same checks, no loop",
    "gr-tortie-restarts": "kill -9 tortie-bgpd: the daemon keeps its routes throughout; stale cleanup after EoR",
    "gr-daemon-restarts": "kill -9 the daemon: tortie keeps its routes stale; fresh again after EoR",
    "scale-100k": "the daemon sends 100,000 routes: tortie holds all, status answers < 1 s, stays Established",
    "bgppeer-local-as": "BGPPeer localASNumber 65100 (node AS 64512): the daemon peers with AS 65100 and sees "
                        "AS_PATH [65100]",
    "bgppeer-allow-local-as": "a route with 65100 in its path: refused as a loop, accepted with "
                              "numAllowedLocalASNumbers: 1",
    "bgppeer-ttl-security": "ttlSecurity (GTSM) both ways: up with GTSM on both; the kernel's TCPMinTTLDrop counts "
                            "drops on the GTSM side when only one side uses it",
    "bgppeer-keepalive-time": "keepaliveTime 2s: the daemon counts tortie's KEEPALIVEs every ~2 s; hold time "
                              "stays 90",
    "bgppeer-next-hop-mode": "nextHopMode Auto and Keep: a block learned over the mesh reaches the eBGP daemon "
                             "with next hop self (Auto) or the learned next hop (Keep)",
    "bgppeer-reachable-by": "the daemon as a ToR speaking from its loopback, which t1 reaches only through "
                            "felixd's reachableBy route: Established, its routes (next hop the loopback) "
                            "programmed via the gateway; the route goes with the field",
    "bgpfilter-communities": "BGPFilter export Reject and Accept with AS-path prepend and a community, "
                             "prefixAdvertisements' standard and large communities seen by the daemon; import "
                             "Reject by CIDR and by community, shown with the rule; a changed import rule applied "
                             "by ROUTE-REFRESH without a session restart",
    "bfd-tortie-detects": "BFD 300 ms x 3 on the session; the daemon's BFD packets dropped (nftables): tortie's "
                          "BFD Down on its detection time, Cease/10 (BFD Down; in a Hard Reset when the N bit is negotiated), routes gone; back by themselves",
    "bfd-daemon-detects": "the same with tortie's BFD packets dropped: the daemon's BFD takes its BGP session "
                          "down and tortie's block out of its RIB; back by themselves",
    "bfd-auth": "BFD with meticulous keyed SHA1 on both sides (tortie's key from a file): Up, nothing dropped",
    "ownership-daemon-hijacks": "daemon as a mesh Node announces another node's block and a more specific of "
                                "it: tortie refuses both (block ownership), counts and shows why; its own "
                                "block is accepted",
}
SYMBOL = {"pass": "pass", "FAIL": "**FAIL**", "ERROR": "**ERROR**", "skip": "skip"}
DEFAULT_RESULTS = Path(__file__).resolve().parent.parent / "build" / "interop" / "results.json"
DEFAULT_DOC = Path(__file__).resolve().parent.parent / "docs" / "interop.md"


def render(run: Mapping[str, Any]) -> str:
    data: dict[str, dict[str, Mapping[str, str]]] = {}
    for r in run["results"]:
        data.setdefault(r["scenario"], {})[r["daemon"]] = r
    scenarios = sorted(data, key=lambda s: (ORDER.index(s) if s in ORDER else len(ORDER), s))
    lines = [
        "# Interop results (generated)",
        "",
        "GENERATED by `make interop-table` from one run of the interop tier (`tests/interop`); do not",
        f"edit. Run: {run['date']} UTC, commit {run['commit']}, `{run.get('command', '')}`"
        + (f", load average {run['load'][0]} / {run['load'][1]} / {run['load'][2]} at its end." if run.get("load")
           else "."),
        "The scenarios are issues 8, 15 and 16's; the daemons run in their own network namespaces from the Debian",
        "packages (BIRD 1.6 from its extraction under `.deps/bird16`).",
        "",
        "| scenario | " + " | ".join(DAEMON_NAMES[d] for d in DAEMONS) + " |",
        "|---|" + "---|" * len(DAEMONS),
    ]
    notes: list[str] = []
    for s in scenarios:
        cells = []
        for d in DAEMONS:
            r = data[s].get(d)
            if r is None:
                cells.append("-")
                continue
            cell = SYMBOL.get(r["status"], r["status"])
            if r["status"] != "pass" and r.get("reason"):
                notes.append(f"{len(notes) + 1}. {s} / {DAEMON_NAMES[d]}: {r['reason']}")
                cell += f" [{len(notes)}]"
            cells.append(cell)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += ["Scenarios:", ""] + [f"- **{s}**: {WHAT[s]}" for s in scenarios if s in WHAT] + [""]
    if notes:
        lines += ["Notes (skip reasons, failure summaries):", "", *notes, ""]
    return "\n".join(lines)


def main() -> int:
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_RESULTS
    doc = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_DOC
    if not results.exists():
        print(f"{results}: no interop run recorded (run `make interop-table`)", file=sys.stderr)
        return 1
    run = json.loads(results.read_text())
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(render(run))
    tmp.replace(doc)
    print(f"{doc}: {len(run['results'])} results of the run of {run['date']} UTC ({run['commit']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
