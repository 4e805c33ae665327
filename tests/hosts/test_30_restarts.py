"""Hitless operations, host by host, while every pod pings every other pod: `systemctl restart` of
each daemon, then an upgrade to a package with a higher version. No kernel route of any host is
deleted, no peer withdraws the restarting host's blocks, not one ping is lost. An upgrade over a
configuration the new version rejects leaves the running daemons alone."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.hosts import cluster as C


def hitless(installed: C.HostsCluster, step: Callable[[str], None], what: str) -> dict[str, float]:
    """`step(host)` on each host in turn, each followed by full convergence, under pings and a route
    watch on every host; returns the seconds each host took."""
    C.until(installed.converged, 120, "converged before " + what, interval=0.5, diag=installed.diag)
    since = installed["master"].run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    watch = C.RouteWatch(installed)
    pingers = C.Pingers(installed)
    took = {}
    try:
        for host in C.HOSTS:
            t0 = time.monotonic()
            step(host)
            C.until(installed.converged, 120, f"converged after {what} on {host}", interval=0.3,
                    diag=installed.diag)
            took[host] = round(time.monotonic() - t0, 1)
    finally:
        deleted = watch.stop()
        pings = pingers.stop()
    if deleted:  # what the daemons of those hosts said meanwhile, to see who removed the route
        journals = {h: installed[h].journal("-u", "tortie-bgpd", "-u", "tortie-felixd", "--since", since,
                                            "-o", "short-iso-precise")[-6000:] for h in deleted}
        print("\n".join(f"--- {h}\n{j}" for h, j in journals.items()))
    assert deleted == {}, f"kernel routes deleted during {what}: {deleted}"
    lost = {f"{a}->{b}": p["lost"] for (a, b), p in pings.items() if p["lost"]}
    assert not lost, f"pings lost during {what}: {lost}"
    assert all(p["sent"] > 20 * len(C.HOSTS) for p in pings.values()), pings
    installed.notes.setdefault("pings", {})[what] = {f"{a}->{b}": p["sent"] for (a, b), p in pings.items()}  # type: ignore[index]
    return took


def graceful_seen(installed: C.HostsCluster, host: str, since: str) -> bool:
    """Every other host kept `host`'s routes as stale while it was away (not withdrawn)."""
    addr = installed.addresses[host]
    return all(f"peer {addr} down" in (j := installed[o].journal("-u", "tortie-bgpd", "--since", since))
               and "keeping its routes as stale" in j for o in C.HOSTS if o != host)


def test_systemctl_restart_is_hitless(installed: C.HostsCluster) -> None:
    pids: dict[str, dict[str, str]] = {}

    def restart(host: str) -> None:
        m = installed[host]
        pids[host] = {u: m.main_pid(u) for u in C.UNITS}  # type: ignore[misc]
        since = m.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
        m.systemctl("restart", "tortie-bgpd")
        C.until(installed.converged, 120, f"converged after restarting tortie-bgpd on {host}", interval=0.3,
                diag=installed.diag)
        assert graceful_seen(installed, host, since), host
        m.systemctl("restart", "tortie-felixd")
        for unit in C.UNITS:
            assert m.main_pid(unit) != pids[host][unit]  # really restarted

    took = hitless(installed, restart, "systemctl restart")
    installed.notes["restart_seconds"] = took
    print("restart of both daemons, per host (s):", took)


def test_upgrade_host_by_host_is_hitless(installed: C.HostsCluster) -> None:
    deb = installed.debs.upgrade
    version = deb.name.split("_")[1]

    def upgrade(host: str) -> None:
        m = installed[host]
        before = {u: m.main_pid(u) for u in C.UNITS}
        C.install(installed, host, deb)
        assert m.run("dpkg-query", "-W", "-f=${Version}", "tortie").stdout == version
        for unit in C.UNITS:  # the postinst restarted both (after checking the configuration)
            facts = C.unit_facts(m, unit)
            assert facts["MainPID"] != str(before[unit]) and facts["ActiveState"] == "active", (host, unit, facts)

    took = hitless(installed, upgrade, "package upgrade")
    installed.notes["upgrade_seconds"] = took
    print("upgrade per host (s):", took)


def test_upgrade_over_a_broken_configuration_keeps_the_daemons(installed: C.HostsCluster) -> None:
    m = installed["master"]
    config = "/etc/tortie/cluster.yaml"
    good = m.read(config)
    before = {u: m.main_pid(u) for u in C.UNITS}
    m.write(config, good.replace("asNumber: 64512", "asNumber: banana", 1), mode="0640", owner="root:tortie")
    try:
        # the same version again: the postinst runs as for an upgrade ("configure" with the old version)
        proc = m.run("apt-get", "install", "-y", "--reinstall", f"{C.DEB_DIR_IN_HOST}/{installed.debs.upgrade.name}",
                      env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300)
        out = proc.stdout + proc.stderr
        assert "not valid for this version" in out and "spec.asNumber" in out, out
        for unit in C.UNITS:
            facts = C.unit_facts(m, unit)
            assert facts["MainPID"] == str(before[unit]) and facts["ActiveState"] == "active", (unit, facts)
    finally:
        m.write(config, good, mode="0640", owner="root:tortie")
    C.until(installed.converged, 60, "still converged", interval=0.5, diag=installed.diag)
