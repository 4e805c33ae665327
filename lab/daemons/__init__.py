"""Real BGP daemons (BIRD 2, BIRD 1.6, GoBGP, FRR), one per network namespace, for interop tests.

Each runner writes its configuration into its own work directory from plain parameters, starts the
daemon inside a `lab.netns.Netns` (control socket, pid and log in that directory), answers "is the
session Established" and "which prefixes are in the RIB" by polling the daemon's own CLI with a
deadline, and stops the daemon by PID. `diagnostics()` returns the CLI views a failing test prints.

Facts behind the configs are in /work/shared/lab/README.md (for example: FRR drops to user `frr`, BIRD 2
needs `protocol direct` for `gateway recursive` on a shared subnet, GoBGP never touches the kernel).

What each daemon cannot do through these runners: BIRD 1.6 carries one address family per process
(`Bird16(ipv6=True)` runs bird6); GoBGP 3.10 sends no ROUTE-REFRESH of its own (`refresh_in` re-runs
its import policy); `Route.next_hop` is ignored by FRR (it announces `network` routes with its own
address); `DaemonNeighbor.four_octet_as=False` only works on BIRD; FRR's graceful restart is router-wide; GoBGP 3.10
has no BFD, and FRR 8.4's bfdd no BFD authentication.
"""


from __future__ import annotations

from lab.daemons.base import (
           BIRD16_DIR,
           FRR_DIR,
           REPO_ROOT,
           Bfd,
           Daemon,
           DaemonError,
           DaemonNeighbor,
           Route,
           poll,
)
from lab.daemons.bird import Bird2, Bird16
from lab.daemons.frr import Frr
from lab.daemons.gobgp import GoBgp

RUNNERS: dict[str, type[Daemon]] = {"bird2": Bird2, "bird16": Bird16, "gobgp": GoBgp, "frr": Frr}


__all__ = ["BIRD16_DIR", "FRR_DIR", "REPO_ROOT", "RUNNERS", "Bfd", "Bird2", "Bird16", "Daemon", "DaemonError", "Frr",
           "GoBgp", "DaemonNeighbor", "Route", "poll"]
