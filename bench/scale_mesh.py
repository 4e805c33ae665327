"""Scale part (b): a full mesh of N speakers, one namespace each on one bridge, one /26 each.

Variants, each started from cold in the same namespaces (kernel routes flushed between them):
  tortie         tortie-bgpd on every node (the control plane alone)
  tortie_felixd  tortie-bgpd and tortie-felixd on every node, felixd programming the node's kernel
  bird           BIRD 2 on every node (the named peer), exporting to the node's kernel as calico-node's
                 BIRD does; Calico's mesh rule (the higher address is passive), direct next hops,
                 connect delay 0 (BIRD waits at least 0.75-1 s before its first connect) and connect
                 retry 1 s so that speakers starting together find each other quickly.
tortie reads one cluster file shared by every node (Nodes, BlockAffinities, an IPPool, the mesh on),
each daemon with `--node`. All daemons of a variant are spawned at once (t0) and the mesh has
converged when every node holds the other N-1 blocks: in its RIB (tortie-bgpd's `neighbors`
prefixes, BIRD's `show route count`) and, for the variants that program the kernel, in its kernel
table (netlink route events per namespace, by protocol number). Then one new block is assigned to
node 0 (tortie: `tortiectl apply -f` in node 0's namespace on the shared cluster file, which every
daemon reloads; BIRD: a static route added to node 0's config and `configure`), timed until every
other node holds it. Recorded: both times, the time until every speaker answers on its control
socket (`ready_seconds`: N interpreters starting on this machine's cores one after another, where N
hosts start theirs side by side) and from then until converged (`after_ready_seconds`), peak RSS
per speaker (VmHWM; bgpd + felixd for the tortie_felixd variant), CPU seconds of all daemons from
their start to convergence.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.birdctl import RTPROT_BIRD, BirdCtl, bird_conf, kernel_export
from bench.kernel_routes import KernelRoutes, pump_all, route_key
from bench.netlab import BIN, BenchError, BenchLab, batch
from bench.procstat import cpu_seconds, memory
from bench.scale_reflector import POOL, block
from bench.storm import storm
from runtime.control import ControlError, call

ASN = 64512
NEW_BLOCK = "172.31.255.0/26"
RTPROT_TORTIE = 80
POLL = 0.05
VARIANTS = ("bird", "tortie", "tortie_felixd")
# rough peak RSS per node, to stop before the machine runs out of memory
EST_BYTES = {"bird": 10 << 20, "tortie": 50 << 20, "tortie_felixd": 95 << 20}


def address(i: int) -> str:
    return f"10.80.{i // 250}.{i % 250 + 1}"


def node_name(i: int) -> str:
    return f"node-{i}"


def cluster(path: Path, n: int) -> None:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": True, "logSeverityScreen": "Warning"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "mesh"},
         "spec": {"cidr": POOL, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}},
    ]
    for i in range(n):
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": node_name(i)},
                     "spec": {"bgp": {"ipv4Address": f"{address(i)}/16"}}})
        docs.append(affinity(i, block(i)))
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def affinity(i: int, cidr: str) -> dict[str, Any]:
    name = f"{node_name(i)}-{cidr.replace('.', '-').replace('/', '-')}"
    return {"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity", "metadata": {"name": name},
            "spec": {"node": node_name(i), "cidr": cidr, "state": "confirmed", "deleted": "false"}}


def bird_node_conf(work: Path, i: int, n: int, blocks: list[str]) -> str:
    me = address(i)
    body = ["protocol static blocks {", "  ipv4;", *(f"  route {b} blackhole;" for b in blocks), "}",
            *kernel_export(),
            "template bgp mesh {", f"  local {me} as {ASN};", "  direct;",
            "  connect delay time 0; connect retry time 1; error wait time 1, 5;",
            "  ipv4 { gateway direct; import all; export all; };", "}"]
    for j in range(n):
        if j != i:
            passive = " passive on;" if i > j else ""
            body.append(f"protocol bgp n{j} from mesh {{ neighbor {address(j)} as {ASN};{passive} }}")
    return bird_conf(me, work / f"mesh-{i}.log", body)


def rib_count(sock: str) -> int:
    """Routes a tortie-bgpd holds from all its peers (`neighbors`); -1 when it cannot say yet."""
    try:
        return sum(int(r["prefixes"]["received"]) for r in call(sock, "neighbors"))
    except (ControlError, LookupError, TypeError, ValueError, OSError):
        return -1


class Pending:
    """Nodes whose check has not yet passed, checked one at a time in order: a poll stops at the first
    node still short, so all polls together query each node about once plus once per poll."""

    def __init__(self, nodes: list[int], check: Callable[[int], bool]) -> None:
        self.nodes, self.check = list(reversed(nodes)), check
        self.done_at: float | None = None

    def poll(self) -> bool:
        while self.nodes:
            if not self.check(self.nodes[-1]):
                return False
            self.nodes.pop()
        if self.done_at is None:
            self.done_at = time.perf_counter()
        return True


class MeshBench:
    def __init__(self, lab: BenchLab, n: int, timeout: float) -> None:
        self.lab, self.n, self.timeout = lab, n, timeout
        t0 = time.perf_counter()
        self.nodes = lab.on_bridge([(f"m{i}", f"{address(i)}/16") for i in range(n)], static_neighbours=True)
        print(f"  mesh of {n}: namespaces ready in {time.perf_counter() - t0:.1f} s", flush=True)

    def _flush(self) -> None:
        for ns in self.nodes:
            batch(ns, [f"route flush proto {RTPROT_TORTIE}", f"route flush proto {RTPROT_BIRD}"])

    def measure(self, variant: str) -> dict[str, Any]:
        n, lab = self.n, self.lab
        self._flush()
        kernel = None
        proto = RTPROT_BIRD if variant == "bird" else RTPROT_TORTIE
        if variant != "tortie":
            kernel = [KernelRoutes(ns.name, [proto]) for ns in self.nodes]
            if any(k.count(proto) for k in kernel):
                raise BenchError("kernel routes left from the previous variant")
        config = lab.work / f"cluster-mesh-{n}.yaml"
        cluster(config, n)
        procs: list[list[subprocess.Popen[bytes]]] = [[] for _ in range(n)]
        ctls: list[BirdCtl | None] = [None] * n
        socks = [str(lab.work / f"mesh-{n}-{variant}-{i}" / "bgpd.sock") for i in range(n)]
        confs = [bird_node_conf(lab.work, i, n, [block(i)]) for i in range(n)] if variant == "bird" else []
        try:
            t0 = time.perf_counter()
            for i, ns in enumerate(self.nodes):
                if variant == "bird":
                    name = f"mesh-{n}-{i}"
                    (lab.work / f"{name}.conf").write_text(confs[i])
                    (lab.work / f"{name}.ctl").unlink(missing_ok=True)
                    procs[i].append(lab.spawn(ns, ["bird", "-f", "-c", str(lab.work / f"{name}.conf"), "-s",
                                                   str(lab.work / f"{name}.ctl"), "-P", str(lab.work / f"{name}.pid")],
                                              f"{name}.out"))
                else:
                    run_dir = Path(socks[i]).parent
                    procs[i].append(lab.tortie(ns, "bgpd", config, node_name(i), run_dir))
                    if variant == "tortie_felixd":
                        procs[i].append(lab.tortie(ns, "felixd", config, node_name(i), run_dir))

            def bird_ctl(i: int) -> BirdCtl | None:
                if ctls[i] is None and (lab.work / f"mesh-{n}-{i}.ctl").exists():
                    try:
                        ctls[i] = BirdCtl(lab.work / f"mesh-{n}-{i}.ctl")
                    except OSError:
                        return None
                return ctls[i]

            def rib_holds(i: int, want: int) -> bool:
                if variant == "bird":
                    ctl = bird_ctl(i)
                    return ctl is not None and ctl.route_count() >= want + 1  # + its own static
                return rib_count(socks[i]) >= want

            def answers(i: int) -> bool:
                if variant == "bird":
                    return bird_ctl(i) is not None
                return rib_count(socks[i]) >= 0

            others = list(range(n))
            # every speaker up (its control socket answers): on this machine N interpreters start on
            # its two cores one after another, where N real hosts would start theirs side by side
            ready = Pending(others, answers)
            rib = Pending(others, lambda i: rib_holds(i, n - 1))
            kern = Pending(others, lambda i: kernel[i].count(proto) >= n - 1) if kernel else None
            self._wait(procs, kernel, rib, kern, "converge", ready)
            done = max(p.done_at for p in (rib, kern) if p is not None and p.done_at is not None)
            assert ready.done_at is not None
            pids = [p.pid for group in procs for p in group]
            cpu = sum(cpu_seconds(p) for p in pids)
            out: dict[str, Any] = {"seconds": round(done - t0, 3), "rib_seconds": round(rib.done_at - t0, 3),
                                   "ready_seconds": round(ready.done_at - t0, 3),
                                   "after_ready_seconds": round(done - ready.done_at, 3)}
            if kern is not None:
                out["kernel_seconds"] = round(kern.done_at - t0, 3)
            out["cpu_seconds"] = round(cpu, 2)
            if variant != "bird":
                out.update(storm(socks))

            # one new block on node 0, until every other node holds it
            rest = list(range(1, n))
            t1 = time.perf_counter()
            if variant == "bird":
                conf = bird_node_conf(lab.work, 0, n, [block(0), NEW_BLOCK])
                (lab.work / f"mesh-{n}-0.conf").write_text(conf)
                ctl0 = bird_ctl(0)
                assert ctl0 is not None
                reply = ctl0.cmd("configure")
                if not any("Reconfigured" in line or "Reconfiguration in progress" in line for line in reply):
                    raise BenchError(f"BIRD configure on node 0: {reply}")
            else:
                new = lab.work / "new-block.yaml"
                new.write_text(yaml.safe_dump(affinity(0, NEW_BLOCK), sort_keys=False))
                r = self.nodes[0].exec(str(BIN / "tortiectl"), "-c", str(config), "apply", "-f", str(new),
                                       check=False, timeout=120)
                if r.returncode != 0:
                    raise BenchError(f"tortiectl apply: {r.stdout}{r.stderr}")
                out["apply_seconds"] = round(time.perf_counter() - t1, 3)
            key = route_key(NEW_BLOCK)
            rib2 = Pending(rest, lambda i: rib_holds(i, n))
            kern2 = Pending(rest, lambda i: kernel[i].has(proto, key)) if kernel else None
            self._wait(procs, kernel, rib2, kern2, "take the new block")
            done2 = max(p.done_at for p in (rib2, kern2) if p is not None and p.done_at is not None)
            out["new_block_seconds"] = round(done2 - t1, 3)

            per_node = [sum(memory(p.pid)["VmHWM"] for p in group) for group in procs]
            out["peak_rss_bytes_per_speaker"] = {"max": max(per_node), "mean": round(statistics.mean(per_node)),
                                                 "min": min(per_node)}
            if variant == "tortie_felixd":
                out["peak_rss_bytes_bgpd_max"] = max(memory(g[0].pid)["VmHWM"] for g in procs)
                out["peak_rss_bytes_felixd_max"] = max(memory(g[1].pid)["VmHWM"] for g in procs)
            out["cpu_seconds_end"] = round(sum(cpu_seconds(p) for p in pids), 2)
            out["cpu_seconds_per_speaker"] = round(cpu / n, 3)
            return out
        finally:
            for ctl in ctls:
                if ctl is not None:
                    ctl.close()
            live = [p for group in procs for p in group if p.poll() is None]
            for p in live:
                p.terminate()
            for p in live:
                lab.stop(p)
            for k in kernel or []:
                k.close()

    def _wait(self, procs: list[list[subprocess.Popen[bytes]]], kernel: list[KernelRoutes] | None,
              rib: Pending, kern: Pending | None, what: str, ready: Pending | None = None) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            if kernel:
                pump_all(kernel, POLL)
            else:
                time.sleep(POLL)
            up = ready.poll() if ready is not None else True
            if up & rib.poll() & (kern.poll() if kern is not None else True):
                return
            for i, group in enumerate(procs):
                for p in group:
                    if p.poll() is not None:
                        raise BenchError(f"a daemon on node {i} exited ({p.returncode}); logs in {self.lab.work}")
            if time.monotonic() > deadline:
                raise BenchError(f"mesh of {self.n}: {len(rib.nodes)} nodes short in the RIB, "
                                 f"{len(kern.nodes) if kern else 0} in the kernel after {self.timeout:g} s "
                                 f"waiting to {what}")
