"""`tortiectl bgp neighbors` and `tortiectl bgp rib`: the BGP speaker's sessions and tables.

`neighbors` prints one block per peer, like `birdc show protocols all`: state and uptime, what was
negotiated, timers, message and prefix counters, the last error and graceful-restart state.
`rib` prints the Loc-RIB (every candidate per prefix, best first, with why it won or lost) or, with
`--peer`, that peer's Adj-RIB-In with the routes import policy rejected and why (or, with `--out`,
the Adj-RIB-Out, with the export rule that decided each route and the routes a rule kept back). Routes block ownership refused show there too, as "refused" with the reason.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from ctl import daemons
from ctl.common import EXIT_OK, CtlError, UsageError, print_table

MESSAGE_TYPES = ("OPEN", "UPDATE", "KEEPALIVE", "NOTIFICATION", "ROUTE_REFRESH")
RIB_HEADERS = ("PREFIX", "NEXT HOP", "FROM", "BEST", "AS PATH", "ORIGIN", "LOCAL PREF", "MED", "REASON")
RIB_WIDE_HEADERS = (*RIB_HEADERS, "COMMUNITIES", "LARGE COMMUNITIES", "ORIGINATOR ID", "CLUSTER LIST")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run_dir = daemons.run_dir_options()
    bgp = subparsers.add_parser("bgp", parents=[common, run_dir], help="tortie-bgpd's sessions and RIBs")
    verbs = bgp.add_subparsers(dest="bgp_command", metavar="SUBCOMMAND", required=True)

    neighbors = verbs.add_parser("neighbors", aliases=["neighbours"], parents=[common, run_dir],
                                 help="per peer: state, capabilities, timers, counters, last error")
    neighbors.add_argument("peer", nargs="?", metavar="PEER", help="one peer's address (default: all)")
    daemons.add_output_option(neighbors, ("text", "json"))
    neighbors.set_defaults(handler=cmd_neighbors)

    rib = verbs.add_parser("rib", parents=[common, run_dir],
                           help="the Loc-RIB, or with --peer a peer's Adj-RIB-In (--out: Adj-RIB-Out)")
    rib.add_argument("prefix", nargs="?", metavar="PREFIX", help="only this prefix (default: all)")
    rib.add_argument("--peer", metavar="P", help="a peer's address: show its Adj-RIB-In instead of the Loc-RIB")
    rib.add_argument("--out", action="store_true", help="with --peer: what we advertise to it (Adj-RIB-Out)")
    daemons.add_output_option(rib, ("table", "wide", "json"))
    rib.set_defaults(handler=cmd_rib)

    # operator actions on sessions (BIRD's `reload in`, `disable "message"`, `enable`, `graceful restart`)
    refresh = verbs.add_parser("refresh", parents=[common, run_dir],
                               help="ask a peer to send its routes again (ROUTE-REFRESH)")
    refresh.add_argument("peer", metavar="PEER")
    refresh.set_defaults(handler=cmd_action, method="refresh")
    shutdown = verbs.add_parser("shutdown", parents=[common, run_dir],
                                help="take a session down (Cease/2 with a message) until `enable`")
    shutdown.add_argument("peer", metavar="PEER")
    shutdown.add_argument("-m", "--message", default="", help="shutdown communication (RFC 9003)")
    shutdown.set_defaults(handler=cmd_action, method="shutdown")
    enable = verbs.add_parser("enable", parents=[common, run_dir], help="bring a shut-down session back")
    enable.add_argument("peer", metavar="PEER")
    enable.set_defaults(handler=cmd_action, method="enable")
    gstop = verbs.add_parser("graceful-stop", parents=[common, run_dir],
                             help="stop tortie-bgpd for an upgrade, as `systemctl stop` does: peers keep its "
                                  "routes (graceful restart) until it is started again")
    gstop.set_defaults(handler=cmd_action, method="graceful_stop")


def cmd_action(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if getattr(args, "peer", None) is not None:
        params["peer"] = args.peer
    if args.method == "shutdown":
        params["message"] = args.message
    print(daemons.ask(args, daemons.BGPD, args.method, **params))
    return EXIT_OK


# ---------------------------------------------------------------------------------------- neighbors


def cmd_neighbors(args: argparse.Namespace) -> int:
    peers = daemons.ask(args, daemons.BGPD, "neighbors", peer=args.peer) or []
    if args.peer is not None and not peers:
        raise CtlError(f"tortie-bgpd has no peer {args.peer}")
    if args.output == "json":
        daemons.print_json(peers)
        return EXIT_OK
    if not peers:
        print("No BGP peers configured.")
        return EXIT_OK
    blocks = [neighbor_block(p) for p in sorted(peers, key=lambda p: daemons.address_key(str(p.get("address"))))]
    print("\n\n".join(blocks))
    return EXIT_OK


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _or_dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def neighbor_block(peer: Mapping[str, Any]) -> str:
    state = str(peer.get("state") or "Idle")
    head = f"BGP peer {peer.get('address')} ({peer.get('peer_type', '?')}"
    head += f", node {peer['node']})" if peer.get("node") else ")"
    since = daemons.format_since(peer.get("since"))
    if state == "Established":
        state_text = f"Established, up {daemons.format_duration(peer.get('uptime_seconds'))} (since {since})"
    else:
        state_text = f"{state} (since {since})"
    if peer.get("admin_down"):
        state_text += ", administratively down"

    caps: Mapping[str, Any] = peer.get("capabilities") or {}
    gr: Mapping[str, Any] = caps.get("graceful_restart") or {}
    restart_time = gr.get("remote_restart_time")
    gr_text = f"local {_yes(gr.get('local'))}, remote {_yes(gr.get('remote'))}"
    if restart_time is not None:
        gr_text += f" (restart time {restart_time} s)"
    if gr.get("notification") == "negotiated":
        gr_text += ", notification (RFC 8538)"
    if peer.get("graceful_restart_state"):
        gr_text += f"; {peer['graceful_restart_state']}"

    lines: list[tuple[str, str]] = [
        ("State", state_text),
        ("Last error", _or_dash(peer.get("last_error"))),
        ("Neighbor AS", _or_dash(peer.get("asn"))),
        ("Neighbor ID", _or_dash(peer.get("remote_router_id"))),
        ("Source address", _or_dash(peer.get("local_address"))),
        ("Hold time", f"{_or_dash(peer.get('hold_time'))} s"),
        ("Keepalive time", f"{_seconds(peer.get('keepalive_time'))} s"),
        ("Address families", ", ".join(caps.get("families") or []) or "-"),
        ("Capabilities", capability_text(caps)),
        ("ADD-PATH receive", ", ".join(caps.get("add_path_receive") or []) or "-"),
        ("Graceful restart", gr_text),
        *((("BFD", bfd_text(peer["bfd_session"])),) if peer.get("bfd_session") else ()),
        ("Prefixes", prefix_text(peer.get("prefixes") or {})),
        ("Last NOTIFICATION sent", _or_dash(peer.get("last_notification_sent"))),
        ("Last NOTIFICATION received", _or_dash(peer.get("last_notification_received"))),
    ]
    width = max(len(label) for label, _ in lines) + 2
    out = [head] + [f"  {(label + ':').ljust(width)}{value}" for label, value in lines]
    out += message_lines(peer.get("messages") or {}, width)
    return "\n".join(out)


def bfd_text(bfd: Mapping[str, Any] | None) -> str:
    """`Up, rx 300 ms / tx 300 ms x 3, detection 900 ms, discriminators 0x1a2b3c4d / 0x5e6f7a8b` and
    why it last changed when it is not Up."""
    if not bfd:
        return "off"
    state = str(bfd.get("state"))
    text = state
    if state == "Up" and bfd.get("uptime_seconds") is not None:
        text += f" for {daemons.format_duration(bfd.get('uptime_seconds'))}"
    elif bfd.get("diagnostic") and bfd["diagnostic"] != "no diagnostic":
        text += f" ({bfd['diagnostic']})"
    text += (f", rx {_seconds(bfd.get('min_rx_ms'))} ms / tx {_seconds(bfd.get('min_tx_ms'))} ms"
             f" x {bfd.get('multiplier')}")
    if bfd.get("detection_time_ms") is not None:
        text += f", detection {_seconds(bfd['detection_time_ms'])} ms"
    text += f", discriminators {int(bfd.get('local_discriminator') or 0):#010x} / " \
            f"{int(bfd.get('remote_discriminator') or 0):#010x}"
    if bfd.get("multihop"):
        text += ", multihop"
    if bfd.get("authentication"):
        text += f", {bfd['authentication']}"
    packets = bfd.get("packets") or {}
    dropped = sum(int(n) for n in (packets.get("dropped") or {}).values())
    text += f"; packets {packets.get('sent', 0)} sent, {packets.get('received', 0)} received"
    if dropped:
        text += f", {dropped} dropped"
    if bfd.get("failures"):
        text += f"; {bfd['failures']} failures"
    return text


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def capability_text(caps: Mapping[str, Any]) -> str:
    names = [("four_octet_as", "four-octet AS"), ("route_refresh", "route refresh"),
             ("enhanced_route_refresh", "enhanced route refresh"), ("extended_message", "extended message")]
    have = [text for key, text in names if caps.get(key)]
    return ", ".join(have) or "-"


def prefix_text(prefixes: Mapping[str, Any]) -> str:
    rejected: Mapping[str, int] = prefixes.get("rejected") or {}
    total = sum(int(n) for n in rejected.values())
    text = (f"{prefixes.get('received', 0)} received, {prefixes.get('accepted', 0)} accepted, "
            f"{total} rejected")
    if total:
        text += " (" + ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()) if n) + ")"
    return text + f", {prefixes.get('advertised', 0)} advertised"


def message_lines(messages: Mapping[str, Mapping[str, int]], width: int) -> list[str]:
    """A small table: message types across, sent and received down."""
    cols = [max(len(t), *(len(str((messages.get(d) or {}).get(t, 0))) for d in ("sent", "received")))
            for t in MESSAGE_TYPES]
    label = "Messages:".ljust(width)
    out = ["  " + label + "  ".join(t.rjust(w) for t, w in zip(MESSAGE_TYPES, cols))]
    for direction in ("sent", "received"):
        counts = messages.get(direction) or {}
        out.append("    " + direction.ljust(width - 2)
                   + "  ".join(str(counts.get(t, 0)).rjust(w) for t, w in zip(MESSAGE_TYPES, cols)))
    return out


# ---------------------------------------------------------------------------------------- rib


def cmd_rib(args: argparse.Namespace) -> int:
    if args.out and not args.peer:
        raise UsageError("--out needs --peer: the Adj-RIB-Out is per peer")
    params: dict[str, Any] = {"prefix": args.prefix, "peer": args.peer}
    if args.peer:
        params["direction"] = "out" if args.out else "in"
    entries = daemons.ask(args, daemons.BGPD, "rib", **params) or []
    if args.output == "json":
        daemons.print_json(entries)
        return EXIT_OK
    if not entries:
        print(f"No routes found{_rib_scope(args)}.")
        return EXIT_OK
    wide = args.output == "wide"
    print_table(RIB_WIDE_HEADERS if wide else RIB_HEADERS, rib_rows(entries, wide))
    return EXIT_OK


def _rib_scope(args: argparse.Namespace) -> str:
    where = ""
    if args.prefix:
        where += f" for {args.prefix}"
    if args.peer:
        where += f" {'advertised to' if args.out else 'received from'} {args.peer}"
    return where


def rib_rows(entries: Sequence[Mapping[str, Any]], wide: bool = False) -> list[list[str]]:
    """Grouped by prefix in address order; within a prefix the daemon's order (best first) stays."""
    order = sorted(range(len(entries)), key=lambda i: (daemons.prefix_key(str(entries[i].get("prefix"))), i))
    rows = []
    for i in order:
        e = entries[i]
        best = "refused" if e.get("refused") else "filtered" if e.get("filtered") else "yes" if e.get("best") else "no"
        if e.get("stale"):
            best += " (stale)"
        row = [str(e.get("prefix", "")), _or_dash(e.get("next_hop")), _or_dash(e.get("from")), best,
               _or_dash(e.get("as_path")), _or_dash(e.get("origin")), _or_dash(e.get("local_pref")),
               _or_dash(e.get("med")), _or_dash(e.get("reason"))]
        if wide:
            row += [_join(e.get("communities")), _join(e.get("large_communities")),
                    _or_dash(e.get("originator_id")), _join(e.get("cluster_list"), " ")]
        rows.append(row)
    return rows


def _join(values: Sequence[str] | None, sep: str = ",") -> str:
    return sep.join(values or []) or "-"
