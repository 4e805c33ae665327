"""An idle speaker, run by hand (not in CI): what one tortie-bgpd costs before it has any routes to
carry, beside BIRD 2 started the same way in the same run.

    sudo .venv/bin/python bench/idle.py                 # 5 rounds, alternating order
    sudo .venv/bin/python bench/idle.py --rounds 9 --no-write

Each daemon starts in its own network namespace on a bridge, as a node of a two-node mesh whose other
node never comes (so it holds one configured session, trying to connect, and its own block), in the
foreground as a user starts it (tortie-bgpd: the venv's console script with a cluster file; BIRD 2:
`bird -f`). Recorded per round: start time (spawn until the control socket answers: `status` for
tortie-bgpd, `show status` for BIRD), CPU seconds to that point, and after `--settle` seconds idle
the resident set (VmRSS), its peak (VmHWM) and the CPU seconds in all. Results: bench/results/idle.json
(date, commit, machine, load, command, every round and the medians).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results
from bench.birdctl import bird_conf
from bench.netlab import BenchLab, check_environment, cleanup_on_signals, wait
from bench.procstat import cpu_seconds, memory
from runtime.control import ControlError, call

ASN = 64512
ME, OTHER = "10.81.0.1", "10.81.0.2"
BLOCK = "10.201.0.0/26"
KINDS = ("tortie", "bird")


def cluster(path: Path) -> None:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": True, "logSeverityScreen": "Warning"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "idle"},
         "spec": {"cidr": "10.201.0.0/16", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity", "metadata": {"name": "node-0-b"},
         "spec": {"node": "node-0", "cidr": BLOCK, "state": "confirmed", "deleted": "false"}},
    ]
    for i, address in enumerate((ME, OTHER)):
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": f"node-{i}"},
                     "spec": {"bgp": {"ipv4Address": f"{address}/16"}}})
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def bird_idle_conf(work: Path) -> str:
    body = ["protocol static blocks {", "  ipv4;", f"  route {BLOCK} blackhole;", "}",
            f"protocol bgp node1 {{ local {ME} as {ASN}; neighbor {OTHER} as {ASN}; direct;",
            "  ipv4 { import all; export all; }; }"]
    return bird_conf(ME, work / "idle-bird.log", body)


def measure(lab: BenchLab, kind: str, r: int, settle: float) -> dict[str, Any]:
    ns = lab.on_bridge([(f"i{kind[0]}{r}", f"{ME}/16")])[0]
    t0 = time.perf_counter()
    if kind == "bird":
        proc, ctl = lab.bird(ns, f"idle-{r}", bird_idle_conf(lab.work), timeout=60)
        ctl.cmd("show status")
    else:
        config = lab.work / "cluster.yaml"
        cluster(config)
        run_dir = lab.work / f"idle-{r}"
        proc = lab.tortie(ns, "bgpd", config, "node-0", run_dir)
        sock = str(run_dir / "bgpd.sock")

        def answers() -> bool:
            if proc.poll() is not None:
                raise SystemExit(f"tortie-bgpd exited: {lab.log_tail('bgpd-node-0.log')}")
            try:
                call(sock, "status", timeout=2)
                return True
            except ControlError:
                return False

        wait(answers, 60, "tortie-bgpd to answer on its control socket", 0.01)
    start = time.perf_counter() - t0
    start_cpu = cpu_seconds(proc.pid)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline and proc.poll() is None:  # an idle daemon: nothing to wait on
        time.sleep(0.1)
    if proc.poll() is not None:
        raise SystemExit(f"{kind} exited while idle")
    mem = memory(proc.pid)
    out = {"start_s": round(start, 3), "start_cpu_s": round(start_cpu, 3), "cpu_s": round(cpu_seconds(proc.pid), 3),
           "rss_mb": round(mem["VmRSS"] / 1e6, 2), "peak_rss_mb": round(mem["VmHWM"] / 1e6, 2)}
    lab.stop(proc)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--settle", type=float, default=3.0, help="seconds idle before memory is read")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", type=Path, default=results.RESULTS / "idle.json")
    args = p.parse_args()
    check_environment("bird")
    cleanup_on_signals()
    meta = results.Run()
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    with BenchLab(f"idl{os.getpid() % 10000}") as lab:
        for r in range(args.rounds):
            for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                m = measure(lab, kind, r, args.settle)
                rounds[kind].append(m)
                print(f"round {r} {kind}: {m}", flush=True)
    med = {k: {f: statistics.median(m[f] for m in v) for f in v[0]} for k, v in rounds.items()}
    ratios = {f: round(med["tortie"][f] / med["bird"][f], 1) for f in med["bird"] if med["bird"][f]}
    print(f"medians: {med}\ntortie / BIRD: {ratios}")
    if not args.no_write:
        results.merge(args.output, "idle", {**meta.finish(), "rounds": rounds, "median": med, "tortie_over_bird": ratios})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
