"""The composed path users see: a full table from a BIRD 2 sender into a host's kernel.

    sudo .venv/bin/python bench/datapath.py                          # 100,000 routes, median of 3 rounds
    sudo .venv/bin/python bench/datapath.py --routes 1000000 --rounds 1
    sudo .venv/bin/python bench/datapath.py --routes 1000 --rounds 1  # smoke

A BIRD 2 sender (AS 65001, a static protocol holding N IPv4 prefixes in the cluster file's 10.0.0.0/8
pool) has an eBGP session, disabled at first, to each of two receivers in AS 64512, every one in its
own namespace on one bridge:
  (a) a tortie host: tortie-bgpd and tortie-felixd started as users start them (the venv's console
      scripts, a cluster file, `--node`, a run directory for the control and feed sockets), felixd
      programming its namespace's kernel (`proto 80`);
  (b) the named peer: a BIRD 2 receiver exporting its table to its own kernel (`proto bird`).
Each round enables the sender's session to one receiver, then to the other (the order alternates),
so the two never share the cores. The clock starts at the sender's Established timestamp (BIRD's own,
ms resolution) and stops when all N routes are in the receiver's kernel table, counted by protocol
number from netlink route events on a socket opened in that namespace (no process per poll). Every
20 ms the sender's CLI is poked (BIRD sleeps up to 3 s in poll(), and without a wake-up its last
UPDATEs leave late) and the receiver's own count is read over its control socket, which gives the
time until the receiver holds all N (tortie-bgpd's `neighbors` prefixes, BIRD's imported counter from
`show protocols all`, which it keeps, not `show route count`, which walks its table):
the split between ingest and kernel programming. Also recorded: CPU seconds of each receiving
daemon during the ingest, and peak RSS (VmHWM) of tortie-bgpd, tortie-felixd (and their sum) and
BIRD. Results: bench/results/datapath.json, one key per route count.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results
from bench.birdctl import RTPROT_BIRD
from bench.fulltable import HOSTS, POOL, SPEAKER, cluster, receiver_conf, speaker_conf
from bench.kernel_routes import KernelRoutes, pump_all
from bench.netlab import BenchError, BenchLab, check_environment, cleanup_on_signals, prefixes, wait
from bench.procstat import Usage, memory
from runtime.control import ControlError, call

RTPROT_TORTIE = 80
POLL = 0.02  # seconds between CLI pokes / receiver RIB counts
MB = 1_000_000
RECEIVER_PROTOCOL = "from_speaker"  # the BIRD receiver's session to the sender (bench.fulltable)

TARGETS = {
    100_000: "into the kernel within 1.5x BIRD's time; at most 120 MB RSS for tortie-bgpd + tortie-felixd",
    1_000_000: "into the kernel within 2x BIRD's time; at most 250 B of tortie-bgpd RSS per route (felixd connected)",
}


def profile_start(work: Path, which: str, pids: dict[str, int], n: int) -> list[subprocess.Popen[bytes]]:
    """With TORTIE_BENCH_PROFILE set (py-spy's path), sample every receiving daemon during the ingest:
    speedscope files in the work directory (kept with --keep)."""
    spy = os.environ.get("TORTIE_BENCH_PROFILE")
    if not spy:
        return []
    procs = []
    for name, pid in pids.items():
        out = work / f"profile-{which}-{name}-{n}.speedscope.json"
        procs.append(subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--format",
                                       "speedscope", "--output", str(out), "--nonblocking"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.3)  # py-spy attaches before the clock starts
    return procs


def profile_stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        proc.wait(timeout=60)


def bgpd_received(sock: str) -> int:
    """Routes tortie-bgpd holds from the sender (`neighbors`); -1 when it cannot say."""
    try:
        rows = call(sock, "neighbors", peer=SPEAKER)
        return int(rows[0]["prefixes"]["received"])
    except (ControlError, LookupError, TypeError, ValueError, OSError):
        return -1


def bgpd_established(sock: str) -> bool:
    try:
        return any(p.get("state") == "Established" for p in call(sock, "status")["peers"])
    except (ControlError, LookupError, TypeError, OSError):
        return False


def felixd_synced(sock: str) -> bool:
    """felixd is connected to bgpd's feed and has its snapshot (or says nothing about it)."""
    try:
        st = call(sock, "status")
    except (ControlError, OSError):
        return False
    return bool(st.get("feed_synced", st.get("feed_connected", True)))


class Datapath:
    def __init__(self, lab: BenchLab, n: int, timeout: float) -> None:
        self.lab, self.n, self.timeout = lab, n, timeout
        self.routes = prefixes(n, POOL)
        spk, tor, brd = lab.on_bridge(HOSTS, static_neighbours=True)
        t0 = time.perf_counter()
        _, self.speaker = lab.bird(spk, "speaker", speaker_conf(lab.work, self.routes))
        wait(lambda: self.speaker.route_count() >= n, 600, "the sender to load its static routes", 0.2)
        print(f"sender ready with {n} routes ({self.routes[0]} .. {self.routes[-1]}) "
              f"in {time.perf_counter() - t0:.1f} s; work dir {lab.work}", flush=True)
        self.bird_proc, self.receiver = lab.bird(brd, "receiver", receiver_conf(lab.work, to_kernel=True))
        config = lab.work / "cluster.yaml"
        cluster(config)
        run_dir = lab.work / "tortie"
        self.bgpd = lab.tortie(tor, "bgpd", config, "tortie", run_dir)
        self.bgpd_sock = str(run_dir / "bgpd.sock")
        wait(lambda: bgpd_received(self.bgpd_sock) == 0 or self._died(), 60, "tortie-bgpd to answer", 0.05)
        self.felixd = lab.tortie(tor, "felixd", config, "tortie", run_dir)
        felixd_sock = str(run_dir / "felixd.sock")
        wait(lambda: felixd_synced(felixd_sock) or self._died(), 60, "tortie-felixd to sync with bgpd's feed", 0.05)
        self._died()
        self.kernel = {"tortie": KernelRoutes(tor.name, [RTPROT_TORTIE]),
                       "bird": KernelRoutes(brd.name, [RTPROT_BIRD])}
        self.proto = {"tortie": RTPROT_TORTIE, "bird": RTPROT_BIRD}
        self.pids = {"tortie": {"bgpd": self.bgpd.pid, "felixd": self.felixd.pid},
                     "bird": {"bird": self.bird_proc.pid}}
        self.rounds_seen: list[str] = []
        self.baseline = {name: memory(pid)["VmRSS"] for group in self.pids.values() for name, pid in group.items()}

    def _died(self) -> bool:
        for name, proc in (("bgpd", self.bgpd), ("felixd", getattr(self, "felixd", None))):
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"tortie-{name} exited ({proc.returncode}):\n"
                                 f"{self.lab.log_tail(f'{name}-tortie.log')}")
        return False

    def held(self, which: str) -> int:
        return bgpd_received(self.bgpd_sock) if which == "tortie" else self.receiver.imported(RECEIVER_PROTOCOL)

    def ingest(self, which: str) -> dict[str, Any]:
        """Enable the sender's session to `which`; time until all N are in its kernel (and RIB)."""
        proto = f"to_{which}"
        table, rtproto = self.kernel[which], self.proto[which]
        usage = Usage(self.pids[which])
        profilers = profile_start(self.lab.work, which, self.pids[which], len(self.rounds_seen))
        self.speaker.cmd(f"enable {proto}")
        start = wait(lambda: self.speaker.established_at(proto), 60, f"{proto} Established", 0.005)
        held_at = kernel_at = None
        cpu: dict[str, float] = {}
        marks = [self.n * q // 10 for q in range(1, 10)]  # the kernel's count at each tenth: stalls show
        progress: list[float] = []
        deadline = time.monotonic() + self.timeout
        next_poll = time.monotonic()
        while kernel_at is None:
            pump_all([table], max(0.0, min(POLL, next_poll - time.monotonic())))
            have = table.count(rtproto)
            while marks and have >= marks[0]:
                marks.pop(0)
                progress.append(round(time.time() - start, 3))
            if have >= self.n:
                kernel_at = time.time()
                cpu = usage.cpu()
                break
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + POLL
                self.speaker.cmd("show status")
                if held_at is None and self.held(which) >= self.n:
                    held_at = time.time()
                if which == "tortie":
                    self._died()
            if now > deadline:
                raise BenchError(f"{which}: {table.count(rtproto)} of {self.n} routes in the kernel after "
                                 f"{self.timeout:g} s (RIB holds {self.held(which)})")
        profile_stop(profilers)
        self.rounds_seen.append(which)
        if held_at is None:  # the kernel completed between two RIB polls
            held_at = kernel_at
        return {"kernel_seconds": round(kernel_at - start, 3), "held_seconds": round(held_at - start, 3),
                "kernel_tenths_seconds": progress, "cpu_seconds": cpu, "netlink_resyncs": table.resyncs}

    def reset(self) -> None:
        self.speaker.cmd("disable to_tortie")
        self.speaker.cmd("disable to_bird")

        def empty() -> bool:
            pump_all(list(self.kernel.values()), 0)
            return (all(t.count(self.proto[w]) == 0 for w, t in self.kernel.items())
                    and self.receiver.imported(RECEIVER_PROTOCOL) == 0 and bgpd_received(self.bgpd_sock) <= 0
                    and not bgpd_established(self.bgpd_sock))

        wait(empty, self.timeout, "both receivers to flush the table from RIB and kernel", 0.2)

    def peak_rss(self) -> dict[str, int]:
        return {name: memory(pid)["VmHWM"] for group in self.pids.values() for name, pid in group.items()}


def run(n: int, rounds: int, timeout: float, keep: bool) -> dict[str, Any]:
    lab = BenchLab("tdp", keep=keep)
    try:
        bench = Datapath(lab, n, timeout)
        per: dict[str, list[dict[str, Any]]] = {"tortie": [], "bird": []}
        for r in range(rounds):
            for which in (("bird", "tortie") if r % 2 == 0 else ("tortie", "bird")):
                got = bench.ingest(which)
                per[which].append(got)
                print(f"round {r + 1}: {which:6s} kernel {got['kernel_seconds']:8.3f} s  "
                      f"RIB {got['held_seconds']:8.3f} s  CPU {got['cpu_seconds']}  "
                      f"tenths {got['kernel_tenths_seconds']}", flush=True)
            peak = bench.peak_rss()
            if r + 1 < rounds:
                bench.reset()
        return summarise(n, rounds, per, peak, bench.baseline)
    finally:
        lab.close()


def summarise(n: int, rounds: int, per: dict[str, list[dict[str, Any]]], peak: dict[str, int],
              baseline: dict[str, int]) -> dict[str, Any]:
    def med(which: str, key: str) -> float:
        return round(statistics.median(r[key] for r in per[which]), 3)

    def med_cpu(which: str) -> dict[str, float]:
        names = per[which][0]["cpu_seconds"]
        return {k: round(statistics.median(r["cpu_seconds"][k] for r in per[which]), 3) for k in names}

    res: dict[str, Any] = {
        "routes": n, "rounds": rounds, "prefix_length": int(prefixes(1, POOL)[0].split("/")[1]),
        "rounds_detail": per,
        "median_kernel_seconds": {w: med(w, "kernel_seconds") for w in per},
        "median_held_seconds": {w: med(w, "held_seconds") for w in per},
        "median_cpu_seconds": {w: med_cpu(w) for w in per},
        "peak_rss_bytes": {**peak, "tortie_total": peak["bgpd"] + peak["felixd"]},
        "baseline_rss_bytes": baseline,
    }
    res["prefix_length"] = int(prefixes(n, POOL)[0].split("/")[1])
    k, h = res["median_kernel_seconds"], res["median_held_seconds"]
    res["ratio_kernel"] = round(k["tortie"] / k["bird"], 2)
    res["ratio_held"] = round(h["tortie"] / h["bird"], 2)
    # CPU is steadier than wall time on a loaded machine: the daemons' own work, whoever else runs
    cpu = res["median_cpu_seconds"]
    res["ratio_cpu"] = round(sum(cpu["tortie"].values()) / max(sum(cpu["bird"].values()), 0.01), 2)
    res["bgpd_rss_bytes_per_route"] = round(peak["bgpd"] / n, 1)
    res["targets"] = targets(res)
    return res


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets at this size (100k and 1M have them), each with its measured value."""
    n, peak = res["routes"], res["peak_rss_bytes"]
    if n == 100_000:
        return [
            {"target": "kernel time <= 1.5x BIRD", "value": res["ratio_kernel"], "met": res["ratio_kernel"] <= 1.5},
            {"target": "bgpd + felixd peak RSS <= 120 MB", "value": round(peak["tortie_total"] / MB, 1),
             "met": peak["tortie_total"] <= 120 * MB},
        ]
    if n == 1_000_000:
        return [
            {"target": "kernel time <= 2x BIRD", "value": res["ratio_kernel"], "met": res["ratio_kernel"] <= 2.0},
            {"target": "bgpd peak RSS <= 250 B per route", "value": res["bgpd_rss_bytes_per_route"],
             "met": res["bgpd_rss_bytes_per_route"] <= 250},
        ]
    return []


def report(res: dict[str, Any]) -> None:
    k, h, cpu, peak = (res["median_kernel_seconds"], res["median_held_seconds"], res["median_cpu_seconds"],
                       res["peak_rss_bytes"])
    print(f"\n{res['routes']} routes, sender Established -> all in the receiver's kernel (median of {res['rounds']}):")
    print(f"  tortie (bgpd + felixd) {k['tortie']:8.3f} s   bgpd holds all after {h['tortie']:.3f} s   "
          f"CPU bgpd {cpu['tortie']['bgpd']:.2f} s, felixd {cpu['tortie']['felixd']:.2f} s")
    print(f"  BIRD 2 receiver        {k['bird']:8.3f} s   BIRD holds all after {h['bird']:.3f} s   "
          f"CPU {cpu['bird']['bird']:.2f} s")
    print(f"  ratio tortie/BIRD: kernel {res['ratio_kernel']:.2f}, RIB {res['ratio_held']:.2f}, "
          f"CPU {res['ratio_cpu']:.2f}")
    print(f"  peak RSS: bgpd {peak['bgpd'] / MB:.1f} MB ({res['bgpd_rss_bytes_per_route']:.0f} B/route), "
          f"felixd {peak['felixd'] / MB:.1f} MB, sum {peak['tortie_total'] / MB:.1f} MB; BIRD {peak['bird'] / MB:.1f} MB")
    if not res["targets"]:
        print(f"  targets are set at {', '.join(str(t) for t in TARGETS)} routes; none at {res['routes']}")
    for t in res["targets"]:
        print(f"  {'PASS' if t['met'] else 'FAIL'}  {t['target']}: {t['value']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--routes", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one ingest (or flush) may take")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    p.add_argument("--output", type=Path, default=results.RESULTS / "datapath.json")
    args = p.parse_args()
    check_environment("bird")
    cleanup_on_signals()
    meta = results.Run()
    res = run(args.routes, args.rounds, args.timeout, args.keep)
    res["run"] = meta.finish()
    report(res)
    print(f"  load average: start {res['run']['load_start']}, end {res['run']['load_end']}")
    results.merge(args.output, str(args.routes), res)
    print(f"results: {args.output} (key {args.routes!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
