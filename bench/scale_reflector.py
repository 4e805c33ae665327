"""Scale part (a): one route reflector, N clients played by K BIRD 2 processes.

`rr` holds the reflector (tortie-bgpd, or BIRD 2 as the named peer); the N clients are split in
order over K = ceil(N / clients_per_bird) BIRD processes, client BIRD k in its own namespace `cl<k>`
(each BIRD binds port 179, so two in one namespace would fight over it), each joined to `rr` by its
own veth pair (`eth<k>` in `rr`, `eth0` in `cl<k>`), each with its own config, control socket and
log. Client i is one `protocol bgp` with its own table, router id and source address c_i
(10.65.x.y), and a static protocol originating its /26 (172.16.0.0/12, block i). The reflector has
one address r_i (10.66.x.y) per client, because sessions from one BIRD towards a single reflector
address serialise, and an incoming connection is matched to a BIRD protocol by the remote address
only. BIRD as the reflector is passive (`passive on`); tortie connects too (Calico's `peerSelector`
peerings connect from both sides). BIRD's sessions use `strict bind` so that BIRD listens
on every r_i with its own accept queue (one wildcard socket with BIRD's backlog of 8 overflows when
1,000 clients connect at once). tortie-bgpd listens on every r_i too (`--listen-address`). In `rr`,
r_i sits on the veth towards client i's BIRD, and a route `c_i/32 dev eth<k> src r_i` makes the
kernel pick r_i as the source of the reflector's own connections to client i (tortie peers with
`sourceAddress: None`), so they reach the protocol that expects them. Every address is /32 with
explicit routes, and every neighbour entry permanent (see `BenchLab.on_bridge` on the shared ARP
table).

Why K processes: one BIRD holding all N clients holds N tables of N routes (N^2 routes: 9 million
at N = 3,000) and does all of the clients' work on one core; at N = 1,000 it already used about
7 CPU s of the 8 s the clients took to converge, and at 3,000 it grew to 4.9 GB at 100% of a core
and never caught up, so the figure measured the simulator, not the reflector. K processes spread
that work over the machine's cores (the total client work, N^2 route imports, stays the same), and
each BIRD's per-protocol costs grow with its own clients only. With the default of 500 clients per
BIRD, N <= 500 runs one client BIRD, as before.

One measurement: start the reflector and wait until its control socket answers (`ready_seconds`),
then start the K client BIRDs one after another, without waiting between them beyond each one's
control socket answering (whose sessions connect after BIRD's minimum connect delay, 0.75-1 s, the
same for both reflectors), and wait until every client has imported the other N-1 blocks, read
per protocol from its own client BIRD's `show protocols all cI` (one client per query, each checked
until full, so the check costs N small queries in all, not N per poll). `seconds` is from the
reflector's start to convergence, `converge_seconds` from the clients' start. CPU seconds and peak
RSS are the reflector process's own, from its start; the client BIRDs' CPU (sum) and peak RSS (sum
and largest) and the machine's busy CPU over the clients' part are recorded to tell a reflector
that is slow from one that is starved.

`clients_passive` (`--clients-passive`): the clients only accept and the reflector connects (tortie
does anyway; BIRD without `passive on`). Then no connection of one side can arrive while the
other side's session is Established: BIRD 2 and tortie both take such a connection for the peer
restarting (RFC 4724) and drop the session, which under load (3,000 clients on two cores) turned
into thousands of session restarts, each a full table sent again. The client BIRDs start first
(untimed) and `seconds` runs from the reflector's start as before; `converge_seconds` from the
moment it answers.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from pathlib import Path
from typing import Any

import yaml

from bench.birdctl import BirdCtl, bird_conf
from bench.netlab import BenchError, BenchLab, batch, mac, wait
from bench.procstat import cpu_seconds, memory
from bench.storm import storm
from lab.netns import Netns
from runtime.control import ControlError, call

ASN = 64512
CLUSTER_ID = "244.0.0.1"
POOL = "172.16.0.0/12"
PREFIX_LEN = 14  # 10.64.0.0/14 holds both sides' addresses (the reflector Node's address length)
POLL = 0.05
CLIENTS_PER_BIRD = 500

_HEADER = re.compile(r"^(?:\d{4}-)?(\S+)\s+BGP\s")
_IMPORTED = re.compile(r"Routes:\s+(\d+) imported")


def client_address(i: int) -> str:
    return f"10.65.{i // 250}.{i % 250 + 1}"


def reflector_address(i: int) -> str:
    return f"10.66.{i // 250}.{i % 250 + 1}"


def block(i: int) -> str:
    return f"{ipaddress.IPv4Address(int(ipaddress.IPv4Address('172.16.0.0')) + 64 * i)}/26"


def clients_conf(work: Path, clients: range, k: int, passive: bool = False) -> str:
    """Client BIRD k's config: one table, static and BGP protocol per client in `clients`; with
    `passive`, the clients only accept (each on its own address: `strict bind`)."""
    body = []
    mode = " passive on; strict bind on;" if passive else ""
    for i in clients:
        c, r = client_address(i), reflector_address(i)
        body += [f"ipv4 table t{i};",
                 f"protocol static s{i} {{ ipv4 {{ table t{i}; }}; route {block(i)} blackhole; }}",
                 f"protocol bgp c{i} {{ router id {c}; local {c} as {ASN}; neighbor {r} as {ASN};",
                 f"  connect delay time 0; connect retry time 1; error wait time 1, 5;{mode}",
                 f'  ipv4 {{ table t{i}; import all; export where proto = "s{i}"; }};', "}"]
    return bird_conf(f"10.67.{k // 250}.{k % 250 + 1}", work / f"clients-{k}.log", body)


def bird_reflector_conf(work: Path, n: int, active: bool = False) -> str:
    body = []
    # active: connect as the clients do when they connect (BIRD waits 5 s before its first attempt
    # by default, and 120 s between attempts)
    mode = " connect delay time 0; connect retry time 1; error wait time 1, 5;" if active else " passive on;"
    for i in range(n):
        body += [f"protocol bgp r{i} {{ local {reflector_address(i)} as {ASN}; neighbor {client_address(i)} as {ASN};",
                 f"  rr client; rr cluster id {CLUSTER_ID};{mode} strict bind on;",
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
    """Clients of one client BIRD not yet holding every other client's block, checked one at a time."""

    def __init__(self, ctl: BirdCtl, clients: range, n: int) -> None:
        self.ctl, self.want = ctl, n - 1
        self.pending = [f"c{i}" for i in clients]

    def done(self) -> bool:
        while self.pending:
            if imported(self.ctl, self.pending[-1]).get(self.pending[-1], 0) < self.want:
                return False
            self.pending.pop()
        return True


def groups(n: int, per_bird: int) -> list[range]:
    """The clients of each client BIRD: N split in order into K = ceil(N / per_bird) near-equal runs."""
    k = max(1, math.ceil(n / per_bird))
    return [range(n * j // k, n * (j + 1) // k) for j in range(k)]


def busy_ticks() -> tuple[int, int]:
    """The machine's (busy, total) CPU ticks from /proc/stat (idle and iowait are not busy)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already inside user
    return total - fields[3] - fields[4], total


class ReflectorBench:
    def __init__(self, lab: BenchLab, n: int, timeout: float, per_bird: int = CLIENTS_PER_BIRD,
                 clients_passive: bool = False) -> None:
        self.lab, self.n, self.timeout = lab, n, timeout
        self.clients_passive = clients_passive
        self.groups = groups(n, per_bird)
        self.rr = lab.add("rr")
        self.cls = [lab.add(f"cl{k}") for k in range(len(self.groups))]
        rr_lines = []
        for k, (cl, members) in enumerate(zip(self.cls, self.groups)):
            lab.nss.veth(self.rr, f"eth{k}", cl, "eth0")
            rr_mac, cl_mac = mac(lab.next_port()), mac(lab.next_port())
            rr_lines += [f"link set eth{k} address {rr_mac}"]
            cl_lines = [f"link set eth0 address {cl_mac}", "route replace 10.66.0.0/16 dev eth0 scope link"]
            for i in members:
                c, r = client_address(i), reflector_address(i)
                rr_lines += [f"addr add {r}/32 dev eth{k}", f"route replace {c}/32 dev eth{k} src {r}",
                             f"neigh replace {c} lladdr {cl_mac} dev eth{k} nud permanent"]
                cl_lines += [f"addr add {c}/32 dev eth0", f"neigh replace {r} lladdr {rr_mac} dev eth0 nud permanent"]
            batch(cl, cl_lines)
        # the addresses before the routes that name them as sources
        batch(self.rr, sorted(rr_lines, key=lambda line: not line.startswith(("link", "addr"))))
        self.config = lab.work / f"cluster-rr-{n}.yaml"
        cluster(self.config, n)
        self.clients_confs = [clients_conf(lab.work, members, k, clients_passive)
                              for k, members in enumerate(self.groups)]

    def _start_reflector(self, kind: str) -> tuple[Any, float]:
        t0 = time.perf_counter()
        if kind == "bird":
            proc, ctl = self.lab.bird(self.rr, f"reflector-{self.n}", bird_reflector_conf(self.lab.work, self.n,
                                                                                      self.clients_passive))
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
        clients: list[Any] = []
        ctls: list[BirdCtl] = []
        reflector = None
        ok = False

        def start_clients() -> float:
            t = time.perf_counter()
            for k, conf in enumerate(self.clients_confs):
                proc, ctl = self.lab.bird(self.cls[k], f"clients-{kind}-{self.n}-{k}", conf)
                clients.append(proc)
                ctls.append(ctl)
            return time.perf_counter() - t

        try:
            if self.clients_passive:
                # the listeners first (untimed), then the reflector that connects to them
                clients_started = start_clients()
                busy0 = busy_ticks()
                t_start = time.perf_counter()
                reflector, ready = self._start_reflector(kind)
                cpu_ready = cpu_seconds(reflector.pid)
                t_clients = time.perf_counter()
            else:
                t_start = time.perf_counter()
                reflector, ready = self._start_reflector(kind)
                cpu_ready = cpu_seconds(reflector.pid)
                t_clients = time.perf_counter()
                busy0 = busy_ticks()
                clients_started = start_clients()
            convs = [Convergence(ctl, members, self.n) for ctl, members in zip(ctls, self.groups)]
            deadline = time.monotonic() + self.timeout
            while not all([c.done() for c in convs]):  # a list: every BIRD's next client checked per poll
                if reflector.poll() is not None:
                    raise BenchError(f"{kind} reflector exited ({reflector.returncode})")
                for k, proc in enumerate(clients):
                    if proc.poll() is not None:
                        raise BenchError(f"client BIRD {k} exited ({proc.returncode})")
                if time.monotonic() > deadline:
                    short = sum(1 for ctl in ctls for v in imported(ctl, "c*").values() if v < self.n - 1)
                    up = sum(ctl.established_count() for ctl in ctls)
                    raise BenchError(f"{kind} reflector, {self.n} clients: {short} clients short of routes after "
                                     f"{self.timeout:g} s, {up} of {self.n} sessions "
                                     f"Established; reflector CPU {cpu_seconds(reflector.pid):.0f} s, "
                                     f"peak RSS {memory(reflector.pid)['VmHWM'] / 1e6:.0f} MB")
                time.sleep(POLL)
            t_done = time.perf_counter()
            busy1 = busy_ticks()
            cpu = cpu_seconds(reflector.pid)
            rss = memory(reflector.pid)["VmHWM"]
            client_cpu = sum(cpu_seconds(p.pid) for p in clients)
            client_rss = [memory(p.pid)["VmHWM"] for p in clients]
            # untimed: every client full, and every session still up
            full = {name: v for ctl in ctls for name, v in imported(ctl, "c*").items()}
            short = [k for k, v in full.items() if v < self.n - 1]
            if len(full) != self.n or short:
                raise BenchError(f"{kind}: after convergence {len(short)} clients lack routes")
            # what the start storm cost the tortie reflector: collisions resolved, sessions that came up
            # more than once (a connection taken for the peer restarting drops the one that was up)
            churn = storm([str(self.lab.work / f"rr-{self.n}" / "bgpd.sock")]) if kind == "tortie" else {}
            ok = True
            return {**churn, "seconds": round(t_done - t_start, 3), "ready_seconds": round(ready, 3),
                    "converge_seconds": round(t_done - t_clients, 3), "cpu_seconds": round(cpu, 2),
                    "cpu_seconds_converge": round(cpu - cpu_ready, 2), "peak_rss_bytes": rss,
                    "client_birds": len(clients), "client_birds_start_seconds": round(clients_started, 3),
                    "client_bird_cpu_seconds": round(client_cpu, 2),
                    "client_bird_peak_rss_bytes": sum(client_rss), "client_bird_peak_rss_bytes_max": max(client_rss),
                    # of the machine's cores (2 here), over the clients' part: near 1.0 means every core
                    # was busy (the reflector, the client BIRDs and everyone else's work on this machine)
                    "machine_busy_fraction": round((busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1), 3)}
        finally:
            for ctl in ctls:
                try:
                    ctl.close()
                except OSError:
                    pass
            if ok:
                self._cleanup(*clients, reflector)
            else:
                # the failure is what gets reported; a clean-up problem on top of it is only printed
                try:
                    self._cleanup(*clients, reflector)
                except BenchError as exc:
                    print(f"    (clean-up after the failure: {exc})", flush=True)

    def _cleanup(self, *procs: Any) -> None:
        """Stop the processes; every side's port 179 closed before the next round binds it again."""
        for proc in procs:
            if proc is not None:
                self.lab.stop(proc)
        for ns in (self.rr, *self.cls):
            try:
                wait(lambda ns=ns: not _listening(ns), 30, f"port 179 to close in {ns.name}", 0.1)
            except BenchError as exc:
                raise BenchError(f"{exc}: {ns.exec('ss', '-Htlnp', check=False).stdout}") from None


def _listening(ns: Netns) -> bool:
    return ":179 " in ns.exec("ss", "-Htln", "sport", "= :179", check=False).stdout + " "
