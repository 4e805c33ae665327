"""The lab on etcd (`lab up --datastore etcd`): three etcd members on their own subnet inside the lab,
every host's daemons reading them, real packets between pods.

One lab for the module (its own namespace prefix and directory); the tests run in order and build on
each other: an apply on master reaches worker-3's kernel; one member killed changes nothing and writes
still succeed; all members stopped keep every route and session (kernel route changes counted with
`ip monitor route`: zero) while readiness says why; members back resync with zero route churn; a fifth
host with only ETCD_ENDPOINTS joins, claims a block, and its pod is reachable from every pod.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cluster import Lab, tool
from lab.etcd import EtcdCluster, etcd_missing, record_pids
from lab.topology import SEED_CLUSTER, Pod
from proto.resources import workload_interface_name
from tests.conftest import require_root, require_tools, wait_for

REPO = Path(__file__).resolve().parents[2]
MASTER_BLOCK = "192.168.219.64/26"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_root()
    require_tools("ip", "nft", "curl")
    why = etcd_missing()
    if why:
        pytest.skip(why)
    lab = Lab(Path(tmp_path_factory.mktemp("lab-etcd")), prefix=f"te{secrets.token_hex(2)}-")
    try:
        lab.up(SEED_CLUSTER, datastore="etcd")
        yield lab
    finally:
        lab.down()


def etcd(lab: Lab) -> EtcdCluster:
    assert isinstance(lab.etcd, EtcdCluster)
    return lab.etcd


def routes(lab: Lab, host: str) -> str:
    return lab.ns(host).ip("route", "show", "proto", "80").stdout


def ctl(lab: Lab, host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    out = lab.exec(host, [tool("tortiectl"), *argv], timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def http(lab: Lab, src: str, ip: str) -> str:
    return lab.ns(src).exec("curl", "-sS", "--max-time", "2", f"http://{ip}/", check=False, timeout=10).stdout.strip()


def scrape(lab: Lab, host: str, port: int, path: str) -> tuple[int, str]:
    out = lab.ns(host).exec("curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "3",
                            f"http://127.0.0.1:{port}{path}", check=False, timeout=10).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def established(lab: Lab, host: str) -> float:
    _, body = scrape(lab, host, 9092, "/metrics")
    return sum(float(v) for v in re.findall(r"^tortie_bgp_established_transitions_total\{[^}]*\} (\S+)$", body, re.M))


def test_apply_on_master_reaches_worker3_kernel(lab: Lab) -> None:
    wait_for(lambda: established(lab, "worker-3") >= 3, 60, "worker-3's three sessions")
    t0 = time.monotonic()
    ctl(lab, "master", "apply", "-f", str(REPO / "configs" / "ippool-vxlan.yaml"))
    took = wait_for(lambda: re.search(rf"^{re.escape(MASTER_BLOCK)} via \S+ dev vxlan\.calico",
                                      routes(lab, "worker-3"), re.M) is not None, 30,
                    "master's block over VXLAN in worker-3's kernel")
    print(f"apply on master -> worker-3's kernel: {time.monotonic() - t0:.2f}s (route seen {took:.2f}s after)")
    pods = {p.name: p for p in lab.load().scenario.pods}
    wait_for(lambda: http(lab, "pod-1", pods["pod-3"].ip) == "pod-3", 30, "pod-1 -> pod-3 over VXLAN")


def test_one_member_killed_changes_nothing_and_writes_succeed(lab: Lab) -> None:
    ec = etcd(lab)
    ec.kill_member(ec.members[0])
    try:
        ctl(lab, "master", "apply", "-f", str(REPO / "configs" / "ippool-vxlan-crosssubnet.yaml"))
        # CrossSubnet: worker-1 reaches master (same subnet) directly now
        wait_for(lambda: re.search(rf"^{re.escape(MASTER_BLOCK)} via 10\.30\.0\.10 dev eth0",
                                   routes(lab, "worker-1"), re.M) is not None, 30,
                 "master's block direct in worker-1's kernel")
    finally:
        ec.start_member(ec.members[0])
        ec.wait_healthy()
        record_pids(lab.load(), ec)


def test_all_members_down_keeps_routes_and_sessions_then_resyncs_without_churn(lab: Lab) -> None:
    ec = etcd(lab)
    hosts = [h.name for h in lab.load().scenario.hosts]
    before = {h: established(lab, h) for h in hosts}
    # the kernel settles first: a device felixd made in the tests before (vxlan.calico) finishes
    # IPv6 duplicate address detection a second or two later, and only then does the kernel add its
    # link-local routes, which are not churn of the outage
    for h in hosts:
        wait_for(lambda h=h: not lab.ns(h).ip("-6", "addr", "show", "tentative").stdout.strip(), 15,
                 f"{h}'s IPv6 addresses past duplicate address detection")
    logs = {h: open(lab.dir / f"monitor-{h}.log", "w+") for h in hosts}  # noqa: SIM115
    monitors = {h: subprocess.Popen(["ip", "-n", lab.ns(h).name, "monitor", "route"], stdout=logs[h],
                                    stderr=subprocess.STDOUT) for h in hosts}
    offsets: dict[str, int] = {}
    try:
        # a marker route added and removed proves each monitor is listening before the outage starts
        for h in hosts:
            lab.ns(h).ip("route", "add", "blackhole", "198.51.100.77/32", "proto", "201")
            lab.ns(h).ip("route", "del", "blackhole", "198.51.100.77/32", "proto", "201")
        for h in hosts:
            wait_for(lambda h=h: (lab.dir / f"monitor-{h}.log").read_text().count("198.51.100.77") >= 2, 10,
                     f"{h}'s route monitor")
            offsets[h] = (lab.dir / f"monitor-{h}.log").stat().st_size
        for m in ec.members:
            ec.kill_member(m, signal.SIGTERM)
        record_pids(lab.load(), ec)
        for h in hosts:
            wait_for(lambda h=h: scrape(lab, h, 9092, "/readiness")[0] == 503, 30, f"{h}'s bgpd readiness")
        code, why = scrape(lab, "worker-3", 9092, "/readiness")
        assert "datastore etcdv3 unreachable" in why, why
        code, why = scrape(lab, "worker-3", 9091, "/readiness")
        assert code == 503 and "datastore etcdv3 unreachable" in why, why
        pods = {p.name: p for p in lab.load().scenario.pods}
        assert http(lab, "pod-1", pods["pod-3"].ip) == "pod-3"  # traffic flows on
        for m in ec.members:
            ec.start_member(m)
        ec.wait_healthy()
        record_pids(lab.load(), ec)
        for h in hosts:
            wait_for(lambda h=h: scrape(lab, h, 9092, "/readiness")[0] == 200, 60, f"{h}'s bgpd ready again")
            wait_for(lambda h=h: scrape(lab, h, 9091, "/readiness")[0] == 200, 60, f"{h}'s felixd ready again")
        assert {h: established(lab, h) for h in hosts} == before, "a session was reset"
    finally:
        for p in monitors.values():
            p.terminate()
            p.wait(timeout=10)
    churn = {}
    for h, f in logs.items():
        f.seek(offsets.get(h, 0))
        churn[h] = [line for line in f.read().splitlines() if line.strip()]
        f.close()
    assert all(not lines for lines in churn.values()), f"kernel route changes: {churn}"


def test_a_fifth_host_joins_with_only_the_endpoints(lab: Lab) -> None:
    topo = lab.load()
    ec = etcd(lab)
    topo._attach(topo.ns("fabric"), "worker-4", "10.30.1.77/24", "s2")
    topo.ns("worker-4").exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
    rd = lab.run_dir("worker-4")
    rd.mkdir(parents=True, exist_ok=True)
    env = ["env", f"ETCD_ENDPOINTS={','.join(ec.endpoints)}"]
    common = ["--node", "worker-4", "--run-dir", str(rd), "--log-level", "info"]
    lab._spawn(topo, "bgpd-worker-4", "worker-4", [*env, tool("tortie-bgpd"), *common, "--claim-block"],
               "bgpd-worker-4.log")
    block: list[ipaddress.IPv4Network] = []

    def claimed() -> bool:
        out = lab.exec("master", [tool("tortiectl"), "ipam", "show"]).stdout
        m = re.search(r"^worker-4\s+(\S+)\s", out, re.M)
        if m:
            block.append(ipaddress.ip_network(m.group(1)))
        return bool(m)

    wait_for(claimed, 60, "worker-4 to register and claim a block", interval=0.5)
    node = ctl(lab, "master", "get", "node", "worker-4", "-o", "yaml").stdout
    assert "ipv4Address: 10.30.1.77/24" in node  # autodetected, prefix length included
    ip = str(block[0].network_address + 1)
    iface = workload_interface_name("default.pod-5")
    wep = (f"apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: pod-5, namespace: default}}\n"
           f"spec: {{node: worker-4, pod: pod-5, endpoint: eth0, interfaceName: {iface}, ipNetworks: [{ip}/32]}}\n")
    (lab.dir / "pod-5.yaml").write_text(wep)
    ctl(lab, "master", "apply", "-f", str(lab.dir / "pod-5.yaml"))
    topo._add_pod(Pod("pod-5", "worker-4", ip, iface))
    lab._start_http(topo, "pod-5")
    lab._spawn(topo, "felixd-worker-4", "worker-4", [*env, tool("tortie-felixd"), *common], "felixd-worker-4.log")
    for src in ("pod-1", "pod-2", "pod-3"):
        wait_for(lambda src=src: http(lab, src, ip) == "pod-5", 60, f"{src} -> pod-5")
    for pod in topo.scenario.pods:
        wait_for(lambda pod=pod: http(lab, "pod-5", pod.ip) == pod.name, 30, f"pod-5 -> {pod.name}")
