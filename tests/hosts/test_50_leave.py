"""Leaving the cluster: `tortiectl node drain` withdraws the host's routes from every peer at once
(Cease/Hard Reset), a restart brings it back; `apt remove` drains and stops the services (what stays
in the kernel is what docs/operations.md says), `apt purge` removes the configuration and the user.
Runs last: worker-3 leaves the cluster for good."""

from __future__ import annotations

import json
import time

from tests.hosts import cluster as C

LEAVER = "worker-3"
OTHERS = [h for h in C.HOSTS if h != LEAVER]


def gone_everywhere(cluster: C.HostsCluster, block: str) -> bool:
    return all(block not in cluster.kernel_routes(h) for h in OTHERS)


def test_drain_withdraws_at_once_and_a_restart_returns(installed: C.HostsCluster) -> None:
    block = installed.block_of(LEAVER)
    C.until(installed.converged, 120, "converged", interval=0.5, diag=installed.diag)
    m = installed[LEAVER]
    t0 = time.monotonic()
    out = m.run("tortiectl", "node", "drain", "-m", "maintenance").stdout
    assert "drained" in out
    C.until(lambda: gone_everywhere(installed, block), 10, f"{block} withdrawn on every other host", interval=0.1)
    took = time.monotonic() - t0
    assert took < 5.0, took  # at once: not after the 120 s a graceful restart keeps routes for
    installed.notes["drain_withdrawn_seconds"] = round(took, 2)
    last = {p["address"]: p for p in json.loads(installed["master"].run("tortiectl", "bgp", "neighbors", "-o",
                                                                         "json").stdout)}
    assert "Hard Reset" in str(last[installed.addresses[LEAVER]]["last_notification_received"])
    m.systemctl("restart", "tortie-bgpd")
    C.until(installed.converged, 120, "worker-3 back after a restart", interval=0.5, diag=installed.diag)
    assert all(block in installed.kernel_routes(h) for h in OTHERS)


def test_remove_then_purge(installed: C.HostsCluster) -> None:
    block = installed.block_of(LEAVER)
    m = installed[LEAVER]
    t0 = time.monotonic()
    proc = m.run("apt-get", "remove", "-y", "tortie", env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300)
    # the prerm drained before the units stopped: the peers withdrew at once, not after 120 s
    C.until(lambda: gone_everywhere(installed, block), 10, f"{block} withdrawn after apt remove", interval=0.1)
    installed.notes["remove_withdrawn_seconds"] = round(time.monotonic() - t0, 2)
    for unit in C.UNITS:
        state = m.systemctl("is-active", unit, check=False).stdout.strip()
        assert state == "inactive", (unit, state, proc.stdout[-1500:], m.journal("-u", unit, "-n", "30"))
    assert m.run("test", "-e", "/usr/bin/tortie-bgpd", check=False).returncode != 0
    # configuration and user stay until purge
    assert m.run("test", "-f", "/etc/tortie/cluster.yaml", check=False).returncode == 0
    assert m.run("getent", "passwd", "tortie", check=False).returncode == 0
    # what stays in the kernel (docs/operations.md, "Removing the package"): felixd stops and leaves
    # what it programmed, its own block's blackhole and its pods' routes included, and the device
    routes = installed.kernel_routes(LEAVER)
    assert block in routes and "192.168.97.193" in routes, routes
    assert m.run("ip", "link", "show", "vxlan.calico", check=False).returncode == 0
    m.run("apt-get", "purge", "-y", "tortie", env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300)
    assert m.run("test", "-e", "/etc/tortie", check=False).returncode != 0
    assert m.run("getent", "passwd", "tortie", check=False).returncode != 0
    assert m.run("getent", "group", "tortie", check=False).returncode != 0
    assert m.run("test", "-e", "/etc/default/tortie", check=False).returncode != 0
    assert "tortie" not in m.run("systemctl", "list-unit-files", "--no-pager", "tortie-*", check=False).stdout
    # the others carry on without it
    C.until(lambda: all(len([p for p in installed.peers(h) if p["state"] == "Established"]) == 2
                        for h in OTHERS), 60, "the rest of the mesh up")
