"""`tortiectl routes`: the routes felixd programmed, to hold next to `route -n` / `ip route`.

One row per route felixd wants: DESTINATION (prefix form, not route -n's Genmask), GATEWAY, DEVICE,
FLAGS (onlink, blackhole, scope link), the MODE and POOL that gave it its shape, and KERNEL: `ok` when
the kernel holds exactly this route, `missing` when it does not (absent or different), `stale` when it
is in the kernel but kept only because its BGP peer is restarting (graceful restart).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ctl import daemons
from ctl.common import EXIT_OK, print_table

HEADERS = ("DESTINATION", "GATEWAY", "DEVICE", "FLAGS", "MODE", "POOL", "KERNEL")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    routes = subparsers.add_parser("routes", parents=[common, daemons.run_dir_options()],
                                   help="the routes tortie-felixd programmed and whether the kernel matches")
    daemons.add_output_option(routes)
    routes.set_defaults(handler=cmd_routes)


def cmd_routes(args: argparse.Namespace) -> int:
    routes = daemons.ask(args, daemons.FELIXD, "routes") or []
    if args.output == "json":
        daemons.print_json(routes)
        return EXIT_OK
    if not routes:
        print("No routes programmed.")
        return EXIT_OK
    print_table(HEADERS, [route_row(r) for r in routes])
    return EXIT_OK


def route_flags(route: Mapping[str, Any]) -> str:
    flags = []
    if route.get("kind") == "blackhole":
        flags.append("blackhole")
    if route.get("onlink"):
        flags.append("onlink")
    if route.get("scope_link"):
        flags.append("scope link")
    return ",".join(flags) or "-"


def kernel_state(route: Mapping[str, Any]) -> str:
    if not route.get("in_kernel"):
        return "missing"  # the more urgent news when a stale route is also missing
    return "stale" if route.get("stale") else "ok"


def route_row(route: Mapping[str, Any]) -> list[str]:
    return [str(route.get("prefix", "")), route.get("gateway") or "-", route.get("dev") or "-",
            route_flags(route), str(route.get("mode") or "-"), route.get("pool") or "-", kernel_state(route)]
