"""Scale part (a): one route reflector, N clients played by one BIRD 2 process.

Two namespaces joined by a veth pair: `rr` holds the reflector (tortie-bgpd, or BIRD 2 as the named
peer), `cl` holds the client BIRD. Client i is one `protocol bgp` with its own table, router id and
source address c_i (10.65.x.y), and a static protocol originating its /26 (172.16.0.0/12, block i).
The reflector has one address r_i (10.66.x.y) per client, because sessions from one BIRD towards a
single reflector address serialise, and an incoming connection is matched to a BIRD protocol by the
remote address only. The reflector is passive: tortie by Calico's rule (its Node address 10.66.0.1
is above every client's), BIRD by `passive on`, each session with `strict bind` so that BIRD listens
on every r_i with its own accept queue (one wildcard socket with BIRD's backlog of 8 overflows when
1,000 clients connect at once). tortie-bgpd listens on every r_i too (`--listen-address`).

One measurement: start the reflector and wait until its control socket answers (`ready_seconds`),
then start the client BIRD (whose sessions connect after BIRD's minimum connect delay, 0.75-1 s,
the same for both reflectors) and wait until every client has imported the other N-1 blocks, read
per protocol from the client BIRD's `show protocols all cI` (one client per query, each checked until
full, so the check costs N small queries in all, not N per poll). `seconds` is from the reflector's
start to convergence, `converge_seconds` from the clients' start. CPU seconds and peak RSS are the
reflector process's own, from its start.
"""

from __future__ import annotations

import ipaddress
import re
import time
from pathlib import Path
from typing import Any

import yaml

from bench.birdctl import BirdCtl, bird_conf
from bench.netlab import BenchError, BenchLab, batch, wait
from bench.procstat import cpu_seconds, memory
from lab.netns import Netns
from runtime.control import ControlError, call

ASN = 64512
CLUSTER_ID = "244.0.0.1"
POOL = "172.16.0.0/12"
PREFIX_LEN = 14  # 10.64.0.0/14 holds both sides' addresses
POLL = 0.05

_HEADER = re.compile(r"^(?:\d{4}-)?(\S+)\s+BGP\s")
_IMPORTED = re.compile(r"Routes:\s+(\d+) imported")


def client_address(i: int) -> str:
    return f"10.65.{i // 250}.{i % 250 + 1}"


def reflector_address(i: int) -> str:
    return f"10.66.{i // 250}.{i % 250 + 1}"


def block(i: int) -> str:
    return f"{ipaddress.IPv4Address(int(ipaddress.IPv4Address('172.16.0.0')) + 64 * i)}/26"


def clients_conf(work: Path, n: int) -> str:
    body = []
    for i in range(n):
        c, r = client_address(i), reflector_address(i)
        body += [f"ipv4 table t{i};",
                 f"protocol static s{i} {{ ipv4 {{ table t{i}; }}; route {block(i)} blackhole; }}",
                 f"protocol bgp c{i} {{ router id {c}; local {c} as {ASN}; neighbor {r} as {ASN};",
                 "  connect delay time 0; connect retry time 1; error wait time 1, 5;",
                 f'  ipv4 {{ table t{i}; import all; export where proto = "s{i}"; }};', "}"]
    return bird_conf("10.65.255.254", work / "clients.log", body)


def bird_reflector_conf(work: Path, n: int) -> str:
    body = []
    for i in range(n):
        body += [f"protocol bgp r{i} {{ local {reflector_address(i)} as {ASN}; neighbor {client_address(i)} as {ASN};",
                 f"  rr client; rr cluster id {CLUSTER_ID}; passive on; strict bind on;",
                 "  ipv4 { import all; export all; };", "}"]
    return bird_conf(reflector_address(0), work / "reflector.log", body)


def cluster(path: Path, n: int) -> None:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": False, "logSeverityScreen": "Warning"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "Node",
         "metadata": {"name": "reflector", "labels": {"route-reflector": "true"}},
         "spec": {"bgp": {"ipv4Address": f"{reflector_address(0)}/{PREFIX_LEN}",
                          "routeReflectorClusterID": CLUSTER_ID}}},
        *({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": f"client-{i}"},
           "spec": {"bgp": {"ipv4Address": f"{client_address(i)}/{PREFIX_LEN}"}}} for i in range(n)),
        # each client's block is its own (bgpd accepts a pool's block only from the node holding its
        # affinity, as IPAM in any Calico cluster records it)
        *({"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
           "metadata": {"name": f"client-{i}-{block(i).replace('.', '-').replace('/', '-')}"},
           "spec": {"node": f"client-{i}", "cidr": block(i), "state": "confirmed", "deleted": "false"}}
          for i in range(n)),
        # sourceAddress None: the kernel picks the source, and the reflector namespace routes client i
        # from r_i, the address that client's BIRD protocol expects (Calico's peerings between Nodes
        # connect from both sides, so the reflector's own connections must reach the right protocol)
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "peer-with-route-reflectors"},
         "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'", "sourceAddress": "None"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "clients"},
         "spec": {"cidr": POOL, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}},
    ]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def imported(ctl: BirdCtl, pattern: str) -> dict[str, int]:
    """Routes imported per BGP protocol matching `pattern` (`show protocols all`)."""
    out: dict[str, int] = {}
    current = None
    for line in ctl.cmd(f'show protocols all "{pattern}"'):
        m = _HEADER.match(line)
        if m:
            current = m.group(1)
            out[current] = 0
            continue
        m = _IMPORTED.search(line)
        if m and current is not None:
            out[current] = int(m.group(1))
    return out


class Convergence:
    """Clients not yet holding every other client's block, checked one at a time."""

    def __init__(self, ctl: BirdCtl, n: int) -> None:
        self.ctl, self.want = ctl, n - 1
        self.pending = [f"c{i}" for i in range(n)]

    def done(self) -> bool:
        while self.pending:
            if imported(self.ctl, self.pending[-1]).get(self.pending[-1], 0) < self.want:
                return False
            self.pending.pop()
        return True


class ReflectorBench:
    def __init__(self, lab: BenchLab, n: int, timeout: float) -> None:
        self.lab, self.n, self.timeout = lab, n, timeout
        self.rr, self.cl = lab.pair("rr", [reflector_address(i) for i in range(n)],
                                    "cl", [client_address(i) for i in range(n)], PREFIX_LEN)
        batch(self.rr, [f"route replace {client_address(i)}/32 dev eth0 src {reflector_address(i)}"
                        for i in range(n)])
        self.config = lab.work / f"cluster-rr-{n}.yaml"
        cluster(self.config, n)
        self.clients_conf = clients_conf(lab.work, n)

    def _start_reflector(self, kind: str) -> tuple[Any, float]:
        t0 = time.perf_counter()
        if kind == "bird":
            proc, ctl = self.lab.bird(self.rr, f"reflector-{self.n}", bird_reflector_conf(self.lab.work, self.n))
            ctl.close()
        else:
            run_dir = self.lab.work / f"rr-{self.n}"
            listen = [a for i in range(self.n) for a in ("--listen-address", reflector_address(i))]
            proc = self.lab.tortie(self.rr, "bgpd", self.config, "reflector", run_dir, *listen)
            sock = str(run_dir / "bgpd.sock")

            def answers() -> bool:
                if proc.poll() is not None:
                    raise BenchError(f"tortie-bgpd exited ({proc.returncode}):\n"
                                     f"{self.lab.log_tail('bgpd-reflector.log')}")
                try:
                    return bool(call(sock, "status"))
                except ControlError:
                    return False
            try:
                wait(answers, 120, "tortie-bgpd (reflector) to answer", 0.02)
            except BaseException:
                self.lab.stop(proc)
                raise
        return proc, time.perf_counter() - t0

    def measure(self, kind: str) -> dict[str, Any]:
        """One convergence with `kind` ("tortie" or "bird") as the reflector."""
        t_start = time.perf_counter()
        reflector, ready = self._start_reflector(kind)
        clients = None
        ok = False
        try:
            cpu_ready = cpu_seconds(reflector.pid)
            t_clients = time.perf_counter()
            clients, ctl = self.lab.bird(self.cl, f"clients-{kind}-{self.n}", self.clients_conf)
            conv = Convergence(ctl, self.n)
            deadline = time.monotonic() + self.timeout
            while not conv.done():
                if reflector.poll() is not None:
                    raise BenchError(f"{kind} reflector exited ({reflector.returncode})")
                if time.monotonic() > deadline:
                    short = sum(1 for v in imported(ctl, "c*").values() if v < self.n - 1)
                    raise BenchError(f"{kind} reflector, {self.n} clients: {short} clients short of routes after "
                                     f"{self.timeout:g} s, {ctl.established_count()} of {self.n} sessions "
                                     f"Established; reflector CPU {cpu_seconds(reflector.pid):.0f} s, "
                                     f"peak RSS {memory(reflector.pid)['VmHWM'] / 1e6:.0f} MB")
                time.sleep(POLL)
            t_done = time.perf_counter()
            cpu = cpu_seconds(reflector.pid)
            rss = memory(reflector.pid)["VmHWM"]
            client_cpu = cpu_seconds(clients.pid)
            # untimed: every client full, and every session still up
            full = imported(ctl, "c*")
            short = [k for k, v in full.items() if v < self.n - 1]
            if len(full) != self.n or short:
                raise BenchError(f"{kind}: after convergence {len(short)} clients lack routes")
            ctl.close()
            ok = True
            return {"seconds": round(t_done - t_start, 3), "ready_seconds": round(ready, 3),
                    "converge_seconds": round(t_done - t_clients, 3), "cpu_seconds": round(cpu, 2),
                    "cpu_seconds_converge": round(cpu - cpu_ready, 2), "peak_rss_bytes": rss,
                    "client_bird_cpu_seconds": round(client_cpu, 2)}
        finally:
            if ok:
                self._cleanup(clients, reflector)
            else:
                # the failure is what gets reported; a clean-up problem on top of it is only printed
                try:
                    self._cleanup(clients, reflector)
                except BenchError as exc:
                    print(f"    (clean-up after the failure: {exc})", flush=True)

    def _cleanup(self, *procs: Any) -> None:
        """Stop the processes; both sides' port 179 closed before the next round binds it again."""
        for proc in procs:
            if proc is not None:
                self.lab.stop(proc)
        for ns in (self.rr, self.cl):
            try:
                wait(lambda ns=ns: not _listening(ns), 30, f"port 179 to close in {ns.name}", 0.1)
            except BenchError as exc:
                raise BenchError(f"{exc}: {ns.exec('ss', '-Htlnp', check=False).stdout}") from None


def _listening(ns: Netns) -> bool:
    return ":179 " in ns.exec("ss", "-Htln", "sport", "= :179", check=False).stdout + " "
