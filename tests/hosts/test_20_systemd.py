"""What systemd enforces and what the daemons do under it: the sandbox and capabilities in force
(and everything still working inside it), a broken configuration failing the start with file and field
and not retried, a reload that keeps unchanged sessions, the watchdog restarting a frozen daemon
without a route lost."""

from __future__ import annotations

import json
import re
import subprocess
import time

from runtime.caps import capability_sets
from tests.hosts import cluster as C

NEEDED = {"tortie-bgpd": 1 << 10, "tortie-felixd": 1 << 12}  # CAP_NET_BIND_SERVICE, CAP_NET_ADMIN
MAX_EXPOSURE = 2.5
WATCHDOG_SEC, RESTART_SEC = 20, 2


def test_hardening_in_force(installed: C.HostsCluster) -> None:
    def check(host: str) -> dict[str, float]:
        m = installed[host]
        uid = m.run("id", "-u", "tortie").stdout.strip()
        exposure = {}
        for unit in C.UNITS:
            pid = m.main_pid(unit)
            status = m.read(f"/proc/{pid}/status")
            caps = capability_sets(status)
            # exactly the one capability each needs, nothing more, and it cannot gain any
            for key in ("CapEff", "CapPrm", "CapAmb", "CapBnd"):
                assert caps[key] == NEEDED[unit], (host, unit, key, hex(caps[key]))
            assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
            assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^Seccomp:\s+2$", status, re.M)
            out = m.run("systemd-analyze", "security", "--no-pager", unit).stdout
            match = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
            assert match, out[-500:]
            exposure[unit] = float(match.group(1))
        return exposure

    results = C.parallel(check, C.HOSTS)
    installed.notes["systemd_analyze_security"] = results
    print("systemd-analyze security:", results)
    for host, units in results.items():
        for unit, value in units.items():
            assert value <= MAX_EXPOSURE, (host, unit, value)


def test_everything_works_inside_the_sandbox(installed: C.HostsCluster) -> None:
    m = installed["worker-1"]
    # nftables: natOutgoing's table, written by felixd with CAP_NET_ADMIN only
    assert "masquerade" in m.run("nft", "list", "table", "inet", "tortie").stdout
    # sysctls: proxy ARP on the workload's interface, from inside ProtectSystem=strict
    iface = "cali83dbd022cd5"
    assert m.read(f"/proc/sys/net/ipv4/conf/{iface}/proxy_arp").strip() == "1"
    # TCP MD5 on every mesh session (nodeMeshPassword): the option is on BGP segments on the fabric
    # (a route refresh makes some at once instead of waiting for a keepalive)
    cap = subprocess.Popen(["ip", "netns", "exec", installed.ns("fabric"), "tcpdump", "-n", "-v", "-l", "-c", "1",
                            "-i", "vf-w1", "tcp port 179"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stderr is not None and "listening on" in cap.stderr.readline()
        m.run("tortiectl", "bgp", "refresh", installed.addresses["master"])
        out, _ = cap.communicate(timeout=40)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert "md5" in out, out
    # the control sockets: 0660 tortie:tortie in a 0750 directory, so group tortie may use tortiectl
    assert m.run("stat", "-c", "%a %U %G", "/run/tortie/bgpd.sock").stdout.split() == ["660", "tortie", "tortie"]
    assert m.run("stat", "-c", "%a %U %G", "/run/tortie").stdout.split() == ["750", "tortie", "tortie"]
    m.run("sh", "-c", "id ops >/dev/null 2>&1 || useradd -M -G tortie -s /usr/sbin/nologin ops")
    m.run("sh", "-c", "id guest >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin guest")
    ops = m.run("runuser", "-u", "ops", "--", "tortiectl", "node", "status", check=False)
    assert ops.returncode == 0 and "Established" in ops.stdout, ops.stdout + ops.stderr
    guest = m.run("runuser", "-u", "guest", "--", "tortiectl", "node", "status", check=False)
    assert guest.returncode != 0 and "Permission denied" in guest.stdout + guest.stderr, guest.stdout + guest.stderr


def test_broken_configuration_fails_the_start_and_is_not_retried(installed: C.HostsCluster) -> None:
    m = installed["master"]
    config = "/etc/tortie/cluster.yaml"
    good = m.read(config)
    m.systemctl("stop", "tortie-bgpd")
    try:
        # missing: not started, and systemd says why
        m.run("mv", config, config + ".away")
        assert m.systemctl("start", "tortie-bgpd", check=False).returncode == 0
        assert C.unit_facts(m, "tortie-bgpd")["ConditionResult"] == "no"
        assert "ConditionPathExists=/etc/tortie/cluster.yaml" in \
            m.systemctl("status", "--no-pager", "tortie-bgpd", check=False).stdout
        m.run("mv", config + ".away", config)
        # invalid: the start fails, the status names file, line and field, and there is no retry
        m.write(config, good.replace("asNumber: 64512", "asNumber: banana", 1), mode="0640", owner="root:tortie")
        t0 = time.monotonic()
        proc = m.systemctl("start", "tortie-bgpd", check=False)
        failed_after = time.monotonic() - t0
        assert proc.returncode != 0
        status = m.systemctl("status", "--no-pager", "-n", "20", "tortie-bgpd", check=False).stdout
        assert "/etc/tortie/cluster.yaml" in status and "spec.asNumber" in status and "line 10" in status, status
        assert "Status: \"invalid configuration: /etc/tortie/cluster.yaml" in status, status
        facts = C.unit_facts(m, "tortie-bgpd")
        assert facts["ExecMainStatus"] == "78" and facts["Result"] == "exit-code", facts
        end = time.monotonic() + 3 * RESTART_SEC  # longer than RestartSec: a retry would have happened
        while time.monotonic() < end:
            facts = C.unit_facts(m, "tortie-bgpd")
            assert facts["ActiveState"] == "failed" and facts["NRestarts"] == "0", facts
            time.sleep(0.5)
        # felixd, running, saw the same file change and kept its configuration
        assert m.systemctl("is-active", "tortie-felixd", check=False).stdout.strip() == "active"
        C.until(lambda: "configuration not reloaded" in m.journal("-u", "tortie-felixd", "-p", "err"), 30,
                "felixd rejecting the broken file")
        installed.notes["broken_config_start_failed_seconds"] = round(failed_after, 2)
    finally:
        m.write(config, good, mode="0640", owner="root:tortie")
        m.systemctl("reset-failed", "tortie-bgpd", check=False)
        m.systemctl("start", "tortie-bgpd")
    C.until(installed.converged, 120, "converged again", interval=0.5, diag=installed.diag)


def neighbors(m: C.Machine) -> dict[str, dict[str, object]]:
    return {p["address"]: p for p in json.loads(m.run("tortiectl", "bgp", "neighbors", "-o", "json").stdout)}


def test_reload_applies_a_peer_change_and_keeps_unchanged_sessions(installed: C.HostsCluster) -> None:
    m = installed["master"]
    config = "/etc/tortie/cluster.yaml"
    good = m.read(config)
    before = neighbors(m)
    assert len(before) == 3 and all(p["state"] == "Established" for p in before.values())
    extra = ("---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: master-extra\n"
             "spec:\n  node: master\n  peerIP: 10.30.0.99\n  asNumber: 64512\n")
    t0 = time.monotonic()
    m.write(config, good + extra, mode="0640", owner="root:tortie")
    m.systemctl("reload", "tortie-bgpd")
    try:
        C.until(lambda: "10.30.0.99" in neighbors(m), 30, "the new peer configured")
        after = neighbors(m)
        elapsed = time.monotonic() - t0
        for address, old in before.items():
            new = after[address]
            assert new["state"] == "Established", new
            assert new["since"] == old["since"], (address, old["since"], new["since"])
            assert float(new["uptime_seconds"]) >= float(old["uptime_seconds"]) + elapsed - 1.0, (old, new)
        assert "configuration applied" in m.journal("-u", "tortie-bgpd", "--since", "-2min")
    finally:
        m.write(config, good, mode="0640", owner="root:tortie")
        m.systemctl("reload", "tortie-bgpd")
    C.until(lambda: "10.30.0.99" not in neighbors(m), 30, "the extra peer removed again")
    assert all(p["state"] == "Established" for p in neighbors(m).values())


def test_watchdog_restarts_a_frozen_daemon_and_no_route_is_lost(installed: C.HostsCluster) -> None:
    frozen = {"worker-1": "tortie-bgpd", "worker-2": "tortie-felixd"}
    before = {h: C.unit_facts(installed[h], u) for h, u in frozen.items()}
    watch = C.RouteWatch(installed)
    pingers = C.Pingers(installed)
    t0 = time.monotonic()
    for host in frozen:
        installed[host].run("kill", "-STOP", before[host]["MainPID"])

    def restarted(host: str) -> float:
        unit = frozen[host]
        m = installed[host]
        C.until(lambda: (f := C.unit_facts(m, unit))["MainPID"] not in ("0", before[host]["MainPID"])
                and f["ActiveState"] == "active" and f["SubState"] == "running", WATCHDOG_SEC + RESTART_SEC + 40,
                f"{unit} on {host} restarted by the watchdog", interval=0.2)
        return time.monotonic() - t0

    try:
        took = C.parallel(restarted, frozen)
        C.until(installed.converged, 120, "converged after the watchdog restarts", interval=0.5,
                diag=installed.diag)
    finally:
        deleted = watch.stop()
        pings = pingers.stop()
    installed.notes["watchdog_restart_seconds"] = {h: round(t, 1) for h, t in took.items()}
    print("watchdog restarts after (s):", took)
    for host, unit in frozen.items():
        m = installed[host]
        after = C.unit_facts(m, unit)
        assert int(after["NRestarts"]) == int(before[host]["NRestarts"]) + 1, after
        assert "Watchdog timeout" in m.journal("-u", unit, "--since", "-3min"), host
        # killed at WatchdogSec, started again RestartSec later, then READY: well inside this bound
        assert took[host] <= WATCHDOG_SEC + RESTART_SEC + 15, took
    assert deleted == {}, deleted
    assert all(not p["lost"] for p in pings.values()), pings
    assert all(p["sent"] > 100 for p in pings.values()), pings
