"""The package on four Debian 12 hosts under systemd: install with apt, units enabled but
waiting for a configuration, `systemctl start` returning once the daemon is ready, and the article's
VXLAN step working with both daemons under systemd."""

from __future__ import annotations

from tests.hosts import cluster as C


def test_install_enables_the_units_and_they_wait_for_a_configuration(installed: C.HostsCluster) -> None:
    for host in C.HOSTS:
        m = installed[host]
        assert "Creating user 'tortie'" in installed.notes["install"][host]["output"]  # type: ignore[index]
        for unit in C.UNITS:
            before = installed.notes["before_config"][host][unit]  # type: ignore[index]
            assert before["UnitFileState"] == "enabled", (host, unit, before)
            # installed without /etc/tortie/cluster.yaml: skipped by ConditionPathExists, not failed
            assert before["ActiveState"] == "inactive" and before["ConditionResult"] == "no", (host, unit, before)
        for exe in ("tortie-bgpd", "tortie-felixd", "tortiectl"):
            assert m.run("sh", "-c", f"command -v {exe}").stdout.strip() == f"/usr/bin/{exe}"
        passwd = m.run("getent", "passwd", "tortie").stdout.strip().split(":")
        assert int(passwd[2]) < 1000 and passwd[6] == "/usr/sbin/nologin", passwd
        assert m.run("stat", "-c", "%a %U %G", "/etc/tortie").stdout.split() == ["750", "root", "tortie"]
        conffiles = m.run("dpkg-query", "-W", "-f=${Conffiles}", "tortie").stdout
        assert "/etc/tortie/cluster.yaml.example" in conffiles and "/etc/default/tortie" in conffiles
        assert m.run("test", "-f", "/usr/lib/sysusers.d/tortie.conf", check=False).returncode == 0


def test_start_returns_once_the_daemon_is_ready(installed: C.HostsCluster) -> None:
    delays = {}
    for host in C.HOSTS:
        for unit in C.UNITS:
            facts = installed.notes["start"][host][unit]  # type: ignore[index]
            # Type=notify: when `systemctl start` returned the unit was running and had said READY=1
            # (its status text comes with READY), and its control socket was there
            assert facts["ActiveState"] == "active" and facts["SubState"] == "running", (host, unit, facts)
            assert facts["StatusText"], (host, unit, facts)
            assert facts["socket_at_return"], (host, unit, facts)
            ready_after = (int(facts["ActiveEnterTimestampMonotonic"])
                           - int(facts["ExecMainStartTimestampMonotonic"])) / 1e6
            assert ready_after > 0.05, (host, unit, facts)  # systemd waited for READY, not for exec
            delays[f"{host}/{unit}"] = round(ready_after, 2)
    installed.notes["ready_after_exec_seconds"] = delays
    print("READY=1 after exec (s):", delays)


def test_vxlan_pod_matrix_under_systemd(installed: C.HostsCluster) -> None:
    matrix = installed.matrix()
    assert all(matrix.values()), matrix
    for host in ("worker-1", "worker-2", "worker-3", "master"):
        link = installed[host].run("ip", "-d", "link", "show", "vxlan.calico").stdout
        assert "vxlan id 4096" in link and "dstport 4789" in link, link
    routes = installed.kernel_routes("worker-1")
    for host in ("master", "worker-2", "worker-3"):
        assert installed.block_of(host) in routes
    # the fabric's source/destination check is on: only encapsulated pod traffic can pass
    srcdst = installed.in_ns("fabric", "nft", "list", "table", "bridge", "tortie_lab_srcdst").stdout
    assert "ip saddr != 10.30.0.206 drop" in srcdst, srcdst
