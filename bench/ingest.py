"""tortie-bgpd's table ingest against BIRD 2's, in one run, in throwaway namespaces.

    sudo .venv/bin/python bench/ingest.py                       # 100,000 routes, median of 3 rounds
    sudo .venv/bin/python bench/ingest.py --routes 1000000 --rounds 1 --rss-only

A BIRD 2 speaker (AS 65001, a static protocol holding N IPv4 prefixes inside the 10.0.0.0/8 pool of
the cluster file tortie reads) has an eBGP session to tortie-bgpd and one to a receiving BIRD 2, both
in AS 64512, each in its own namespace on one bridge. Each round enables the speaker's session to one
receiver, then to the other (the order alternates per round), so the two ingests never share the two
cores with each other. The clock starts when the speaker's session is Established (BIRD's own
timestamp, so both receivers are timed from the same source) and stops when the receiver holds all N
routes: tortie's `neighbors` prefixes.received over its control socket, BIRD's `show route count`
over its control socket (no process is spawned while timing). Between rounds the speaker disables
both sessions and the receivers flush. Peak RSS is VmHWM from /proc. Results go to
bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench import results
from bench.birdctl import BirdCtl
from bench.fulltable import HOSTS, POOL, SPEAKER, cluster, receiver_conf, speaker_conf
from bench.netlab import BenchLab, check_environment, cleanup_on_signals, prefixes, wait
from bench.procstat import memory
from runtime.control import ControlError, call

POLL = 0.02  # seconds between completion checks (each is one control-socket round trip)


# ---------------------------------------------------------------- measuring


@dataclass
class Bench:
    speaker: BirdCtl
    receiver: BirdCtl
    tortie_sock: str
    tortie_pid: int
    bird_pid: int
    n: int

    def tortie_count(self) -> int:
        try:
            return int(call(self.tortie_sock, "neighbors", peer=SPEAKER)[0]["prefixes"]["received"])
        except ControlError:
            return -1

    def tortie_state(self) -> str:
        return str(call(self.tortie_sock, "status")["peers"][0]["state"])

    def ingest(self, which: str, timeout: float) -> float:
        """Enable the speaker's session to `which`; seconds from Established to all N routes held."""
        proto, count = ("to_tortie", self.tortie_count) if which == "tortie" else ("to_bird", self.receiver.route_count)
        self.speaker.cmd(f"enable {proto}")
        start = wait(lambda: self.speaker.established_at(proto), 60, f"{proto} Established", interval=0.005)

        def held_all() -> bool:
            # BIRD's I/O loop sleeps up to 3 s in poll(); the speaker's last UPDATEs wait for its next
            # wake-up (both receivers then see the final ~0.2 % of the table 3 s late). A CLI command
            # wakes it, so the tail goes out at once: the receiver is timed, not BIRD's poll timeout.
            self.speaker.cmd("show status")
            return count() >= self.n

        wait(held_all, timeout, f"{which} to hold {self.n} routes")
        done = time.time()
        return done - start

    def reset(self) -> None:
        self.speaker.cmd("disable to_tortie")
        self.speaker.cmd("disable to_bird")
        wait(lambda: self.receiver.route_count() == 0 and self.tortie_count() == 0
             and self.tortie_state() != "Established", 120, "the receivers to flush", interval=0.2)


class FeedDrain:
    """A route-feed reader on tortie's feed socket, as felixd would be (bytes read and dropped), so
    the ingest includes building and sending the feed deltas."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.octets = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while data := self.sock.recv(1 << 20):
                self.octets += len(data)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def run(n: int, rounds: int, rss_only: bool, timeout: float, feed_reader: bool = False,
        keep: bool = False) -> dict[str, Any]:
    routes = prefixes(n, POOL)
    lab = BenchLab("tnb", keep=keep)
    try:
        spk, tor, brd = lab.on_bridge(HOSTS, static_neighbours=True)
        print(f"{n} prefixes ({routes[0]} .. {routes[-1]}), work dir {lab.work}", flush=True)
        t0 = time.perf_counter()
        _, speaker = lab.bird(spk, "speaker", speaker_conf(lab.work, routes))
        wait(lambda: speaker.route_count() >= n, 300, "the speaker to load its static routes", 0.2)
        print(f"speaker ready ({time.perf_counter() - t0:.1f} s)", flush=True)
        bird_proc, receiver = lab.bird(brd, "receiver", receiver_conf(lab.work, to_kernel=False))
        config = lab.work / "cluster.yaml"
        cluster(config)
        run_dir = lab.work / "tortie"
        tproc = lab.tortie(tor, "bgpd", config, "tortie", run_dir)
        sock = str(run_dir / "bgpd.sock")
        b = Bench(speaker, receiver, sock, tproc.pid, bird_proc.pid, n)
        wait(lambda: b.tortie_count() == 0, 60, "tortie-bgpd to answer", 0.1)
        drain = FeedDrain(str(run_dir / "feed.sock")) if feed_reader else None
        base = {"tortie": memory(tproc.pid), "bird": memory(bird_proc.pid)}
        times: dict[str, list[float]] = {"tortie": [], "bird": []}
        for r in range(rounds):
            order = ("bird", "tortie") if r % 2 == 0 else ("tortie", "bird")
            for which in order:
                if rss_only and which == "bird" and r > 0:
                    continue
                t = b.ingest(which, timeout)
                times[which].append(t)
                print(f"round {r + 1}: {which:6s} {t:7.3f} s", flush=True)
            peak = {"tortie": memory(tproc.pid), "bird": memory(bird_proc.pid)}
            if r + 1 < rounds:
                b.reset()
        if drain is not None:
            drain.close()
        result: dict[str, Any] = {
            "routes": n, "feed_reader": feed_reader, "prefix_length": int(routes[0].split("/")[1]), "rounds": rounds,
            "seconds": {k: v for k, v in times.items()},
            "median_seconds": {k: statistics.median(v) for k, v in times.items() if v},
            "rss_bytes": {k: {"baseline": base[k]["VmRSS"], "peak": peak[k]["VmHWM"], "end": peak[k]["VmRSS"]}
                          for k in ("tortie", "bird")},
        }
        med = result["median_seconds"]
        if "tortie" in med and "bird" in med:
            result["ratio_tortie_to_bird"] = med["tortie"] / med["bird"]
        result["rss_bytes_per_route"] = {k: v["peak"] / n for k, v in result["rss_bytes"].items()}
        result["rss_bytes_per_route_above_baseline"] = {
            k: (v["peak"] - v["baseline"]) / n for k, v in result["rss_bytes"].items()}
        return result
    finally:
        lab.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--routes", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one ingest may take")
    p.add_argument("--rss-only", action="store_true", help="time BIRD once only (for the 1M-route RSS run)")
    p.add_argument("--feed-reader", action="store_true",
                   help="keep a reader on tortie's route feed (as felixd would be) during the run")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    p.add_argument("--output", type=Path, default=results.RESULTS / "ingest.json")
    args = p.parse_args()
    check_environment("bird")
    cleanup_on_signals()
    meta = results.Run()
    res = run(args.routes, args.rounds, args.rss_only, args.timeout, args.feed_reader, args.keep)
    res["run"] = meta.finish()
    med = res["median_seconds"]
    print(f"\ningest of {args.routes} routes, Established -> all held (median of {args.rounds}):")
    print(f"  tortie-bgpd {med.get('tortie', float('nan')):8.3f} s   peak RSS "
          f"{res['rss_bytes']['tortie']['peak'] / 2**20:7.1f} MiB  "
          f"{res['rss_bytes_per_route']['tortie']:6.0f} B/route")
    print(f"  BIRD 2      {med.get('bird', float('nan')):8.3f} s   peak RSS "
          f"{res['rss_bytes']['bird']['peak'] / 2**20:7.1f} MiB  "
          f"{res['rss_bytes_per_route']['bird']:6.0f} B/route")
    if "ratio_tortie_to_bird" in res:
        print(f"  ratio tortie/BIRD {res['ratio_tortie_to_bird']:.2f} (target <= 2)")
    print(f"  tortie RSS per route {res['rss_bytes_per_route']['tortie']:.0f} B (target <= 400)")
    print(f"  load average: start {res['run']['load_start']}, end {res['run']['load_end']}")
    key = f"{args.routes}{' with feed reader' if args.feed_reader else ''}"
    results.merge(args.output, key, res)
    print(f"results: {args.output} (key {key!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
