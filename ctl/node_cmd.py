"""`tortiectl node status`: `calicoctl node status` with tortie's words.

The same shape as calicoctl's output in the Calico routing article: one line per daemon, then a bordered
table per address family with centred headers (PEER ADDRESS, PEER TYPE, STATE, SINCE, INFO), or
"No IPv6 peers found.".
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from ctl import daemons
from ctl.common import EXIT_ERROR, EXIT_OK

HEADERS = ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO")
BFD_HEADER = "BFD"  # a column of its own, only when some peer runs BFD (calicoctl's shape otherwise)
FAMILIES = (("ipv4", "IPv4"), ("ipv6", "IPv6"))


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run_dir = daemons.run_dir_options()
    node = subparsers.add_parser("node", parents=[common, run_dir], help="this host's tortie daemons")
    verbs = node.add_subparsers(dest="node_command", metavar="SUBCOMMAND", required=True)
    status = verbs.add_parser("status", parents=[common, run_dir],
                              help="whether bgpd and felixd run, and the BGP sessions (calicoctl node status)")
    daemons.add_output_option(status)
    status.set_defaults(handler=cmd_status)
    drain = verbs.add_parser("drain", parents=[common, run_dir],
                             help="take this host out of the cluster: every peer withdraws its routes at once "
                                  "(Cease/Hard Reset); sessions stay down until tortie-bgpd restarts")
    drain.add_argument("-m", "--message", default="", help="shutdown communication sent to the peers (RFC 9003)")
    drain.set_defaults(handler=cmd_drain)


def cmd_status(args: argparse.Namespace) -> int:
    bgpd, status = daemons.probe(args, daemons.BGPD, "status")
    felixd, felix_status = daemons.probe(args, daemons.FELIXD, "status")
    code = EXIT_OK if bgpd.running else EXIT_ERROR
    if args.output == "json":
        daemons.print_json({
            "bgpd": _reach_json(bgpd, status),
            "felixd": _reach_json(felixd, felix_status),
        })
        return code
    print(bgpd.line)
    print(felixd.line)
    if not bgpd.running:
        return code
    if status.get("graceful_restart"):  # during an upgrade: routes are held until peers resend theirs
        print(f"tortie-bgpd graceful restart: {status['graceful_restart']}")
    if status.get("route_feed"):  # after a start: felixd's routes are kept until the peers' tables are in
        print(f"tortie-bgpd route feed: {status['route_feed']}")
    peers: Sequence[Mapping[str, Any]] = status.get("peers") or []
    bfd = any(p.get("bfd") for p in peers)
    headers = (*HEADERS, BFD_HEADER) if bfd else HEADERS
    for family, title in FAMILIES:
        print()
        print(f"{title} BGP status")
        rows = [peer_row(p, bfd) for p in sorted((p for p in peers if p.get("family") == family),
                                                  key=lambda p: daemons.address_key(str(p.get("address", ""))))]
        if rows:
            print(boxed_table(headers, rows))
        else:
            print(f"No {title} peers found.")
    return code


def cmd_drain(args: argparse.Namespace) -> int:
    print(daemons.ask(args, daemons.BGPD, "drain", message=args.message))
    return EXIT_OK


def _reach_json(reach: daemons.Reach, status: Any) -> dict[str, Any]:
    return {"running": reach.running, "socket": reach.socket, "error": reach.reason or None, "status": status}


def peer_state(peer: Mapping[str, Any]) -> str:
    """BIRD's protocol state as calicoctl shows it: up, start (trying), down (switched off)."""
    if peer.get("admin_down"):
        return "down"
    if peer.get("state") == "Established":
        return "up"
    return "start"


def peer_info(peer: Mapping[str, Any]) -> str:
    """The BGP state, and why it is not Established yet ("Active Hold timer expired")."""
    state = str(peer.get("state") or "Idle")
    if state == "Established":
        return state
    error = str(peer.get("last_error") or "")
    return f"{state} {error}".strip()


def peer_row(peer: Mapping[str, Any], bfd: bool = False) -> list[str]:
    row = [str(peer.get("address", "")), str(peer.get("peer_type", "")), peer_state(peer),
           daemons.format_since(peer.get("since")), peer_info(peer)]
    if bfd:
        row.append(str(peer.get("bfd") or "-"))
    return row


def boxed_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """calicoctl's table (Go tablewriter defaults): `+---+` borders, centred headers, left-aligned cells."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, width: int) -> str:
        gap = width - len(text)
        return " " * (gap // 2) + text + " " * (gap - gap // 2)

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c} " for c in cells) + "|"

    out = [rule, line([centred(h, w) for h, w in zip(headers, widths)]), rule]
    out += [line([c.ljust(w) for c, w in zip(row, widths)]) for row in rows]
    out.append(rule)
    return "\n".join(out)
