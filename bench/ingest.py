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
import datetime
import ipaddress
import json
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from lab.netns import Netns, NetnsSet
from runtime.control import ControlError, call

BIN = Path(sys.executable).parent
SPEAKER, TORTIE, BIRD = "10.90.0.1", "10.90.0.2", "10.90.0.3"
SPEAKER_AS, RECEIVER_AS = 65001, 64512
POOL = "10.0.0.0/8"
POLL = 0.02  # seconds between completion checks (each is one control-socket round trip)


def prefixes(n: int) -> list[str]:
    """N distinct prefixes inside POOL: /26 blocks while they suffice, longer ones beyond."""
    pool = ipaddress.ip_network(POOL)
    length = 26
    while 2 ** (length - pool.prefixlen) < n:
        length += 1
    if length > 32:
        raise SystemExit(f"{n} prefixes do not fit in {POOL}")
    step = 2 ** (32 - length)
    base = int(pool.network_address)
    return [f"{ipaddress.IPv4Address(base + i * step)}/{length}" for i in range(n)]


# ---------------------------------------------------------------- BIRD over its control socket


class BirdCtl:
    """birdc's protocol spoken directly: one request, lines `NNNN-text` / ` text` until `NNNN text`."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buf = b""
        self._reply()  # the greeting

    def _reply(self) -> list[str]:
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("BIRD closed its control socket")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            text = line.decode(errors="replace")
            lines.append(text)
            if len(text) >= 5 and text[:4].isdigit() and text[4] == " ":
                return lines

    def cmd(self, command: str) -> list[str]:
        self.sock.sendall(command.encode() + b"\n")
        return self._reply()

    def route_count(self) -> int:
        for line in self.cmd("show route count"):
            m = re.search(r"(\d+) of (\d+) routes", line)
            if m:
                return int(m.group(1))
        return 0

    def established_at(self, protocol: str) -> float | None:
        """Wall time the protocol reached Established (`timeformat protocol iso long ms`)."""
        for line in self.cmd(f"show protocols {protocol}"):
            body = line[5:] if line[:4].isdigit() else line
            cols = body.split()
            if cols and cols[0] == protocol and "Established" in body:
                m = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", body)
                if m:
                    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        return None

    def close(self) -> None:
        self.sock.close()


def bird_conf(router_id: str, log: Path, body: list[str]) -> str:
    return "\n".join([f"router id {router_id};", f'log "{log}" {{ warning, error, fatal }};',
                      "timeformat protocol iso long ms;", "protocol device { scan time 60; }", *body]) + "\n"


def speaker_conf(work: Path, routes: list[str]) -> str:
    body = ["protocol static bench_routes {", "  ipv4;"]
    body += [f"  route {p} blackhole;" for p in routes]
    body.append("}")
    for name, peer in (("to_tortie", TORTIE), ("to_bird", BIRD)):
        body += [f"protocol bgp {name} {{", "  disabled on;", f"  local {SPEAKER} as {SPEAKER_AS};",
                 f"  neighbor {peer} as {RECEIVER_AS};", "  ipv4 { import none; export all; };", "}"]
    return bird_conf(SPEAKER, work / "speaker.log", body)


def receiver_conf(work: Path) -> str:
    body = ["protocol bgp from_speaker {", f"  local {BIRD} as {RECEIVER_AS};",
            f"  neighbor {SPEAKER} as {SPEAKER_AS};", "  passive on;", "  ipv4 { import all; export none; };", "}"]
    return bird_conf(BIRD, work / "receiver.log", body)


def cluster(path: Path) -> None:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": RECEIVER_AS, "nodeToNodeMeshEnabled": False, "logSeverityScreen": "Warning"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "tortie"},
         "spec": {"bgp": {"ipv4Address": f"{TORTIE}/24"}}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "bench"},
         "spec": {"cidr": POOL, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "speaker"},
         "spec": {"peerIP": SPEAKER, "asNumber": SPEAKER_AS}},
    ]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


# ---------------------------------------------------------------- measuring


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


def wait(check: Any, timeout: float, what: str, interval: float = POLL) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Bench:
    nss: NetnsSet
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
    routes = prefixes(n)
    work = Path(tempfile.mkdtemp(prefix="tortie-ingest-"))
    nss = NetnsSet(prefix="tnb")
    try:
        br = nss.add("br")
        br.ip("link", "add", "br0", "type", "bridge")
        br.ip("link", "set", "br0", "up")
        hosts: dict[str, Netns] = {}
        for i, (name, addr) in enumerate((("spk", SPEAKER), ("tor", TORTIE), ("brd", BIRD))):
            ns = hosts[name] = nss.add(name)
            br.ip("link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns.name)
            br.ip("link", "set", f"p{i}", "master", "br0")
            br.ip("link", "set", f"p{i}", "up")
            ns.ip("link", "set", "eth0", "up")
            ns.ip("addr", "add", f"{addr}/24", "dev", "eth0")

        def start_bird(ns: Netns, name: str, conf: str) -> tuple[int, BirdCtl]:
            (work / f"{name}.conf").write_text(conf)
            ctl = work / f"{name}.ctl"
            with open(work / f"{name}.out", "ab") as out:
                proc = nss.spawn(ns, "bird", "-f", "-c", str(work / f"{name}.conf"), "-s", str(ctl),
                                 "-P", str(work / f"{name}.pid"), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
            wait(lambda: ctl.exists() or proc.poll() is not None, 120, f"BIRD {name} to start", 0.05)
            if proc.poll() is not None:
                raise SystemExit(f"BIRD {name} exited: {(work / f'{name}.out').read_text()}")
            return proc.pid, BirdCtl(ctl)

        print(f"{n} prefixes ({routes[0]} .. {routes[-1]}), work dir {work}", flush=True)
        t0 = time.perf_counter()
        _, speaker = start_bird(hosts["spk"], "speaker", speaker_conf(work, routes))
        wait(lambda: speaker.cmd("show route count") and any(f"{n} of {n} routes" in line for line in
                                                               speaker.cmd("show route count")),
             300, "the speaker to load its static routes", 0.2)
        print(f"speaker ready ({time.perf_counter() - t0:.1f} s)", flush=True)
        bird_pid, receiver = start_bird(hosts["brd"], "receiver", receiver_conf(work))
        config = work / "cluster.yaml"
        cluster(config)
        run_dir = work / "tortie"
        with open(work / "tortie-bgpd.log", "ab") as out:
            tproc = nss.spawn(hosts["tor"], str(BIN / "tortie-bgpd"), "--config", str(config), "--node", "tortie",
                              "--run-dir", str(run_dir), "--log-level", "warning", stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sock = str(run_dir / "bgpd.sock")
        b = Bench(nss, speaker, receiver, sock, tproc.pid, bird_pid, n)
        wait(lambda: b.tortie_count() == 0, 60, "tortie-bgpd to answer", 0.1)
        drain = FeedDrain(str(run_dir / "feed.sock")) if feed_reader else None
        base = {"tortie": proc_status(tproc.pid), "bird": proc_status(bird_pid)}
        times: dict[str, list[float]] = {"tortie": [], "bird": []}
        for r in range(rounds):
            order = ("bird", "tortie") if r % 2 == 0 else ("tortie", "bird")
            for which in order:
                if rss_only and which == "bird" and r > 0:
                    continue
                t = b.ingest(which, timeout)
                times[which].append(t)
                print(f"round {r + 1}: {which:6s} {t:7.3f} s", flush=True)
            peak = {"tortie": proc_status(tproc.pid), "bird": proc_status(bird_pid)}
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
        speaker.close()
        receiver.close()
        return result
    finally:
        nss.close()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--routes", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one ingest may take")
    p.add_argument("--rss-only", action="store_true", help="time BIRD once only (for the 1M-route RSS run)")
    p.add_argument("--feed-reader", action="store_true",
                   help="keep a reader on tortie's route feed (as felixd would be) during the run")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    p.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "ingest.json")
    args = p.parse_args()
    res = run(args.routes, args.rounds, args.rss_only, args.timeout, args.feed_reader, args.keep)
    res["machine"] = {"cpus": __import__("os").cpu_count(), "kernel": platform.release(),
                      "python": platform.python_version(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
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
    out: Path = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.exists() else {}
    key = f"{args.routes}{' with feed reader' if args.feed_reader else ''}"
    existing[key] = res
    out.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"results: {out} (key {key!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
