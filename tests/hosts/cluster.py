"""The article's four hosts as Debian 12 machines under systemd, with the tortie package installed.

`HostsCluster.up()` builds what the tier shares: the .deb (and a second one with a higher version, for
the upgrade), the cached base image, the lab's namespaces (fabric, hosts, pods, and a `monitor` host on
the external subnet for Prometheus), then boots the four hosts in parallel. Installing the package,
writing the configuration and starting the units is the tier's first test module's job, through the
same commands an operator types.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from lab.netns import unique_name
from lab.topology import REPO, External, LabTopology, Scenario, scenario_from_model
from proto.resources import load_model
from tests.hosts.machines import Machine, base_image

T = TypeVar("T")
HOSTS = ("master", "worker-1", "worker-2", "worker-3")
MONITOR = External("monitor", "203.0.113.20/24", "ext")
DEB_DIR_IN_HOST = "/srv/tortie"
UPGRADE_SUFFIX = "+hosts1"


def parallel(fn: Callable[[str], T], names: Iterable[str]) -> dict[str, T]:
    """`fn(name)` for every name at once (threads: each call mostly waits on a host)."""
    names = list(names)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = {name: pool.submit(fn, name) for name in names}
        return {name: f.result() for name, f in futures.items()}


def until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25,
          diag: Callable[[], str] | None = None) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = f"\n{diag()}" if diag is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}){extra}")
        time.sleep(interval)


PASSWORD_FILE = "/etc/tortie/bgp-password"


def cluster_yaml() -> str:
    """The seed cluster with the article's VXLAN pool (vxlanMode: Always: the mode that works with the
    cloud source/destination check on, on any kernel), every mesh session with a TCP MD5 password."""
    seed = (REPO / "configs" / "seed-cluster.yaml").read_text()
    pool = (REPO / "configs" / "ippool-vxlan.yaml").read_text().strip()
    # The seed is dual stack; this tier runs its IPv4 half (its checks count IPv4 sessions and routes).
    seed = re.sub(r"^ *(ipv6Address: \S+|- fd00:\S+)\n", "", seed, flags=re.M)
    docs = [d for d in seed.split("\n---\n") if "default-ipv6-ippool" not in d and "cidr: fd00:" not in d]
    docs = [pool + "\n" if "kind: IPPool" in d else d for d in docs]
    text = "\n---\n".join(docs)
    return text.replace("  nodeToNodeMeshEnabled: true\n",
                        f"  nodeToNodeMeshEnabled: true\n  nodeMeshPassword:\n    file: {PASSWORD_FILE}\n")


@dataclass
class Debs:
    first: Path
    upgrade: Path

    @property
    def directory(self) -> Path:
        return self.first.parent


def build_debs(out: Path, log: Path) -> Debs:
    """`make deb`'s script (lintian is its own test), then the same package with a higher version:
    unpacked, its version raised, packed again with dpkg-deb, as a rebuild of a newer release is."""
    out.mkdir(parents=True, exist_ok=True)
    given = os.environ.get("TORTIE_HOSTS_DEB")  # built already (make test: hosts-prep): test this one
    if given:
        shutil.copy(given, out)
        return _with_upgrade(next(out.glob("tortie_*.deb")), out)
    env = {**os.environ, "LINTIAN": "0"}
    with open(log, "ab") as f:
        proc = subprocess.run([str(REPO / "scripts" / "build-deb"), str(out)], stdout=f, stderr=subprocess.STDOUT,
                              env=env, timeout=1500)
    if proc.returncode != 0:
        raise RuntimeError(f"make deb failed; see {log}:\n{log.read_text(errors='replace')[-3000:]}")
    return _with_upgrade(next(out.glob("tortie_*.deb")), out)


def _with_upgrade(first: Path, out: Path) -> Debs:
    version = subprocess.run(["dpkg-deb", "-f", str(first), "Version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    newer = version + UPGRADE_SUFFIX
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "pkg"
        subprocess.run(["dpkg-deb", "-R", str(first), str(tree)], check=True)
        control = tree / "DEBIAN" / "control"
        control.write_text(re.sub(r"^Version: .*$", f"Version: {newer}", control.read_text(), flags=re.M))
        upgrade = out / first.name.replace(f"_{version}_", f"_{newer}_")
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(upgrade)], check=True,
                       capture_output=True)
    return Debs(first, upgrade)


@dataclass
class HostsCluster:
    workdir: Path
    topology: LabTopology
    machines: dict[str, Machine]
    debs: Debs
    addresses: dict[str, str]  # host -> its address on the fabric
    pods: dict[str, str]  # pod -> its IP
    pod_host: dict[str, str]
    notes: dict[str, object] = field(default_factory=dict)  # facts recorded along the way, for the report
    lintian: subprocess.Popen[str] | None = None  # started as soon as the .deb is there; a test reads it

    def __getitem__(self, host: str) -> Machine:
        return self.machines[host]

    def ns(self, role: str) -> str:
        return self.topology.ns(role).name

    def in_ns(self, role: str, *cmd: str, timeout: float = 60,
              check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(role), *cmd], capture_output=True, text=True,
                              timeout=timeout, check=check)

    # ---------------------------------------------------------------- tortie on the hosts

    def ctl(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.machines[host].run("tortiectl", *args, check=check, timeout=60)

    def status(self, host: str) -> dict[str, object]:
        import json

        proc = self.ctl(host, "node", "status", "-o", "json", check=False)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return {}

    def peers(self, host: str) -> list[dict[str, object]]:
        st = self.status(host).get("bgpd") or {}
        status = st.get("status") if isinstance(st, dict) else None
        return list(status.get("peers") or []) if isinstance(status, dict) else []

    def host_converged(self, host: str) -> bool:
        """One `tortiectl node status` on `host`: every session Established, no graceful restart
        pending, felixd ready, synced with the feed and holding nothing stale."""
        doc = self.status(host)
        bgpd = (doc.get("bgpd") or {}).get("status") if isinstance(doc.get("bgpd"), dict) else None
        felixd = (doc.get("felixd") or {}).get("status") if isinstance(doc.get("felixd"), dict) else None
        if not isinstance(bgpd, dict) or not isinstance(felixd, dict):
            return False
        peers = bgpd.get("peers") or []
        return (len(peers) == len(HOSTS) - 1 and all(p.get("state") == "Established" for p in peers)
                and not bgpd.get("graceful_restart") and bool(felixd.get("ready"))
                and bool(felixd.get("feed_synced")) and not felixd.get("stale"))

    def converged(self) -> bool:
        """Every host converged (asked in parallel: each answer is a process start inside a host)."""
        return all(parallel(self.host_converged, HOSTS).values())

    def kernel_routes(self, host: str) -> set[str]:
        out = self.machines[host].run("ip", "-4", "route", "show", "proto", "80").stdout
        return {line.split()[0] if not line.startswith("blackhole") else line.split()[1]
                for line in out.splitlines() if line.strip()}

    def block_of(self, host: str) -> str:
        m = re.search(rf"node: {re.escape(host)}\n  cidr: (\S+)", cluster_yaml())
        assert m is not None
        return m.group(1)

    def diag(self) -> str:
        parts = []
        for h in HOSTS:
            m = self.machines[h]
            parts.append(f"--- {h}: {m.run('systemctl', '--no-pager', 'status', 'tortie-bgpd', 'tortie-felixd', check=False).stdout[-1500:]}")
            parts.append(m.run("tortiectl", "node", "status", check=False).stdout)
        return "\n".join(parts)

    # ---------------------------------------------------------------- pods

    def ping(self, src_pod: str, dst_pod: str, count: int = 1, timeout: float = 2.0) -> bool:
        proc = self.in_ns(src_pod, "ping", "-n", "-q", "-c", str(count), "-W", str(int(timeout)),
                          self.pods[dst_pod], timeout=timeout * count + 10)
        return proc.returncode == 0

    def matrix(self) -> dict[tuple[str, str], bool]:
        pairs = [(a, b) for a in self.pods for b in self.pods if a != b]
        results = parallel(lambda key: self.ping(*key.split("|")), [f"{a}|{b}" for a, b in pairs])
        return {(a, b): results[f"{a}|{b}"] for a, b in pairs}


def scenario_with_monitor() -> Scenario:
    sc = scenario_from_model(load_model(cluster_yaml(), "hosts cluster"))  # the IPv4 half, as configured
    return dataclasses.replace(sc, externals=(*sc.externals, MONITOR))


def up(workdir: Path) -> HostsCluster:
    """Everything the tier shares, torn down by `down` (also after a failure half-way)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        image_f = pool.submit(base_image, workdir / "image.log")
        debs_f = pool.submit(build_debs, workdir / "debs", workdir / "deb.log")
        image = image_f.result()
        debs = debs_f.result()
    scenario = scenario_with_monitor()
    lintian = None
    if shutil.which("lintian"):
        lintian = subprocess.Popen(["lintian", "--fail-on", "error,warning", str(debs.first)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
    topo = LabTopology(scenario, prefix=unique_name("th") + "-", state_dir=workdir / "lab")
    cluster = HostsCluster(workdir, topo, {}, debs,
                           addresses={h.name: h.address.split("/")[0] for h in scenario.hosts},
                           pods={p.name: p.ip for p in scenario.pods}, pod_host={p.name: p.host for p in scenario.pods},
                           lintian=lintian)
    try:
        topo.up()
        for host in HOSTS:
            cluster.machines[host] = Machine(host, topo.ns(host).name, image, workdir / "machines",
                                             binds=[(debs.directory, DEB_DIR_IN_HOST)])
        t0 = time.monotonic()
        for m in cluster.machines.values():
            m.boot()
        boot = parallel(lambda h: cluster.machines[h].wait_running(), HOSTS)
        cluster.notes["boot_seconds"] = {h: round(s, 1) for h, s in boot.items()}
        cluster.notes["boot_all_seconds"] = round(time.monotonic() - t0, 1)
    except BaseException:
        down(cluster)
        raise
    return cluster


def down(cluster: HostsCluster) -> None:
    if cluster.lintian is not None and cluster.lintian.poll() is None:
        cluster.lintian.kill()
        cluster.lintian.wait()
    parallel(lambda h: cluster.machines[h].shutdown(), list(cluster.machines))
    cluster.topology.down()
    shutil.rmtree(cluster.workdir / "machines", ignore_errors=True)


def address_of(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


# ---------------------------------------------------------------- installing, the operator's way

UNITS = ("tortie-bgpd", "tortie-felixd")


def unit_facts(m: Machine, unit: str) -> dict[str, str]:
    return m.show(unit, "ActiveState", "SubState", "UnitFileState", "ConditionResult", "StatusText", "MainPID",
                  "NRestarts", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic", "Result",
                  "ExecMainStatus")


def install(cluster: HostsCluster, host: str, deb: Path) -> dict[str, object]:
    m = cluster[host]
    t0 = time.monotonic()
    proc = m.run("apt-get", "install", "-y", "--no-install-recommends", f"{DEB_DIR_IN_HOST}/{deb.name}",
                 env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300)
    return {"seconds": round(time.monotonic() - t0, 1), "output": proc.stdout[-3000:] + proc.stderr[-2000:]}


def configure(cluster: HostsCluster, host: str) -> None:
    """What the operator writes: the shared cluster file and its password (readable by group tortie
    only), and this host's options (metrics on its fabric address, for the Prometheus of the tier)."""
    m = cluster[host]
    m.write(PASSWORD_FILE, "tortie-mesh-md5\n", mode="0640", owner="root:tortie")
    m.write("/etc/tortie/cluster.yaml", cluster_yaml(), mode="0640", owner="root:tortie")
    addr = cluster.addresses[host]
    m.write("/etc/default/tortie", f'BGPD_OPTS="--metrics-address {addr}"\nFELIXD_OPTS="--metrics-address {addr}"\n')


def start(cluster: HostsCluster, host: str) -> dict[str, dict[str, object]]:
    """`systemctl start` each unit; right after it returns, what systemd and the daemon say."""
    m = cluster[host]
    out: dict[str, dict[str, object]] = {}
    for unit in UNITS:
        t0 = time.monotonic()
        m.systemctl("start", unit)
        seconds = time.monotonic() - t0
        sock = "bgpd.sock" if unit == "tortie-bgpd" else "felixd.sock"
        answered = m.run("test", "-S", f"/run/tortie/{sock}", check=False).returncode == 0
        facts: dict[str, object] = dict(unit_facts(m, unit))
        facts.update(start_seconds=round(seconds, 2), socket_at_return=answered)
        out[unit] = facts
    return out


def install_everywhere(cluster: HostsCluster) -> None:
    """Install the first .deb on every host (in parallel), look at the units before there is a
    configuration, then configure and start them; the facts go to `cluster.notes` for the tests."""
    notes = cluster.notes
    notes["install"] = parallel(lambda h: install(cluster, h, cluster.debs.first), HOSTS)
    notes["before_config"] = parallel(lambda h: {u: unit_facts(cluster[h], u) for u in UNITS}, HOSTS)
    parallel(lambda h: configure(cluster, h), HOSTS)
    notes["start"] = parallel(lambda h: start(cluster, h), HOSTS)
    notes["installed"] = True
    until(cluster.converged, 120, "the mesh up and felixd synced on every host", interval=0.5, diag=cluster.diag)


# ---------------------------------------------------------------- watching traffic and routes


class RouteWatch:
    """`ip monitor route` in every host's namespace while something happens: which of tortie's routes
    (protocol 80) the kernel deleted meanwhile."""

    def __init__(self, cluster: HostsCluster) -> None:
        self.files = {h: cluster.workdir / f"monitor-{h}-{time.monotonic_ns()}.txt" for h in HOSTS}
        self.procs = {}
        for h, path in self.files.items():
            with open(path, "wb") as out:
                self.procs[h] = subprocess.Popen(["ip", "-n", cluster.ns(h), "-ts", "monitor", "route"], stdout=out,
                                                 stderr=subprocess.STDOUT, start_new_session=True)
        # ip monitor subscribes some time after it starts: a marker route added and removed in each
        # host, again until its monitor shows it, proves the monitor listens before anything happens
        marker = "198.51.100.77"  # ip shows a host route without its /32
        for h, path in self.files.items():
            def seen(h: str = h, path: Path = path) -> bool:
                for verb in ("add", "del"):
                    subprocess.run(["ip", "-n", cluster.ns(h), "route", verb, "blackhole", marker + "/32", "proto", "201"],
                                   check=True, capture_output=True)
                return marker in path.read_text(errors="replace")
            until(seen, 10, f"{h}'s route monitor listening", interval=0.05)

    def stop(self) -> dict[str, list[str]]:
        deleted: dict[str, list[str]] = {}
        for h, proc in self.procs.items():
            proc.terminate()
            proc.wait(timeout=10)
            lines = self.files[h].read_text(errors="replace").splitlines()
            # each line "[time] what": the time kept, to be read beside the daemons' journals
            gone = [line for line in lines
                    if re.sub(r"^\[[^\]]*\]\s*", "", line).startswith("Deleted") and "proto 80" in line]
            if gone:
                deleted[h] = gone
        return deleted


PING_PAIRS = [(a, b) for a in ("pod-1", "pod-2", "pod-3") for b in ("pod-1", "pod-2", "pod-3") if a != b]


class Pingers:
    """Every pod pings every other pod, 20 a second each, until `stop`."""

    def __init__(self, cluster: HostsCluster, interval: float = 0.05) -> None:
        self.cluster = cluster
        self.files = {}
        self.procs = {}
        for a, b in PING_PAIRS:
            path = cluster.workdir / f"ping-{a}-{b}-{time.monotonic_ns()}.txt"
            self.files[(a, b)] = path
            with open(path, "wb") as out:
                self.procs[(a, b)] = subprocess.Popen(
                    ["ip", "netns", "exec", cluster.ns(a), "ping", "-n", "-i", str(interval), cluster.pods[b]],
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> dict[tuple[str, str], dict[str, object]]:
        """Per pair: sent, answered, and the sequence numbers never answered (the one in flight when
        ping was interrupted does not count as lost)."""
        import signal

        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        out = {}
        for pair, proc in self.procs.items():
            proc.wait(timeout=10)
            text = self.files[pair].read_text(errors="replace")
            m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
            sent = int(m.group(1)) if m else 0
            seqs = {int(x) for x in re.findall(r"icmp_seq=(\d+) ", text)}
            missing = sorted(set(range(1, sent + 1)) - seqs - {sent})
            out[pair] = {"sent": sent, "answered": len(seqs), "lost": missing}
        return out
