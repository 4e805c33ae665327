"""What BFD costs tortie-bgpd: 100 peers at 300 ms x 3, against BIRD 2 running the other ends.

    sudo .venv/bin/python bench/bfd.py [--peers 100] [--window 30]

tortie-bgpd (node t, 10.98.0.1/16, one BGPPeer per peer) and 100 BIRD 2 processes, each in its own
throwaway namespace (prefix `tbf`) with one address (10.98.1.1...), all on one bridge. Each BIRD runs
one static BFD session towards tortie (`protocol bfd`, `neighbor 10.98.0.1 local ...`, 300 ms x 3):
one BIRD, or one FRR bfdd, cannot hold 100 sessions to the same remote address (both key their
sessions by it). No BGP runs on BIRD's side, so tortie's BGP sessions only retry their connections
(refused at once), alike in both phases.

Phase 1, BFD off everywhere (tortie `bfd.tortie.io/enabled: "false"`, the BIRDs without `protocol
bfd`): a window of steady state measures every process's CPU. Phase 2, BFD on: tortie by a reload (BFD
settings alone restart no BGP session), the BIRDs by `birdc configure`; once every session is Up, the
same window again. CPU is utime + stime from /proc/PID/stat over the window, as a share of one core;
each side's BFD cost is the difference of its two windows (for BIRD, the sum over its 100
processes). Target: tortie's BFD cost under 5 % of one core. Results, with the date, commit, machine,
load and the exact command: bench/results/bfd.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bench import results
from lab.netns import NetnsSet
from runtime.control import ControlError, call

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TORTIE = "10.98.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def peer_address(i: int) -> str:
    return f"10.98.{1 + i // 250}.{1 + i % 250}"


def cluster(n: int, bfd: bool) -> list[dict[str, Any]]:
    api = "projectcalico.org/v3"
    docs: list[dict[str, Any]] = [
        {"apiVersion": api, "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": False, "logSeverityScreen": "Warning"}},
        {"apiVersion": api, "kind": "Node", "metadata": {"name": "t"},
         "spec": {"bgp": {"ipv4Address": f"{TORTIE}/16"}}},
        {"apiVersion": api, "kind": "IPPool", "metadata": {"name": "pool"},
         "spec": {"cidr": "10.200.0.0/16", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}},
    ]
    for i in range(n):
        docs.append({"apiVersion": api, "kind": "BGPPeer",
                     "metadata": {"name": f"p{i}", "annotations": {"bfd.tortie.io/enabled": "true" if bfd else "false"}},
                     "spec": {"node": "t", "peerIP": peer_address(i), "asNumber": 65001}})
    return docs


def write_cluster(path: Path, docs: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    os.replace(tmp, path)


def bird_config(i: int, workdir: Path, bfd: bool) -> str:
    c = [f"router id {peer_address(i)};", f'log "{workdir / "bird.log"}" {{ warning, error, fatal }};',
         "protocol device { scan time 60; }"]
    if bfd:
        c += ["protocol bfd {",
              '  interface "*" { min rx interval 300 ms; min tx interval 300 ms; idle tx interval 1000 ms; '
              "multiplier 3; };", f"  neighbor {TORTIE} local {peer_address(i)};", "}"]
    return "\n".join(c) + "\n"


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) seconds: fields 14 and 15 of /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def neighbors(sock: str) -> list[dict[str, Any]]:
    return call(sock, "neighbors", timeout=30)  # type: ignore[no-any-return]


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (ControlError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def window(pids: dict[str, int], seconds: float, sock: str) -> dict[str, Any]:
    before_rows = {r["address"]: r for r in neighbors(sock)}
    start = {k: cpu_times(p) for k, p in pids.items()}
    t0 = time.monotonic()
    load0 = os.getloadavg()
    time.sleep(seconds)  # a measurement window, not a wait for an event
    elapsed = time.monotonic() - t0
    end = {k: cpu_times(p) for k, p in pids.items()}
    used = {k: end[k][0] + end[k][1] - start[k][0] - start[k][1] for k in pids}
    kernel = {k: end[k][1] - start[k][1] for k in pids}
    after_rows = {r["address"]: r for r in neighbors(sock)}

    def packets(rows: dict[str, Any], key: str) -> int:
        return sum((r.get("bfd_session") or {}).get("packets", {}).get(key, 0) for r in rows.values())

    def failures(rows: dict[str, Any]) -> int:
        return sum((r.get("bfd_session") or {}).get("failures", 0) for r in rows.values())

    return {
        "seconds": round(elapsed, 2),
        "cpu_share_of_one_core": {k: round(v / elapsed, 5) for k, v in used.items()},
        "of_which_kernel": {k: round(v / elapsed, 5) for k, v in kernel.items()},
        "bfd_packets_sent_per_s": round((packets(after_rows, "sent") - packets(before_rows, "sent")) / elapsed, 1),
        "bfd_packets_received_per_s": round(
            (packets(after_rows, "received") - packets(before_rows, "received")) / elapsed, 1),
        "bfd_failures": failures(after_rows) - failures(before_rows),
        "bfd_up": sum(1 for r in after_rows.values() if (r.get("bfd_session") or {}).get("state") == "Up"),
        "loadavg_1m_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
    }


def run(n: int, seconds: float) -> dict[str, Any]:
    if shutil.which("bird") is None:
        raise SystemExit("bench/bfd.py needs BIRD 2 (`bird`, scripts/setup.sh installs it)")
    work = Path(f"/tmp/tortie-bench-bfd-{os.getpid()}")
    work.mkdir(parents=True)
    nss = NetnsSet(prefix="tbf")
    try:
        sw, t = nss.add("sw"), nss.add("t")
        sw.ip("link", "add", "br0", "type", "bridge")
        sw.ip("link", "set", "br0", "up")
        nss.veth(sw, "pt", t, "eth0")
        sw.ip("link", "set", "pt", "master", "br0")
        t.ip("addr", "add", f"{TORTIE}/16", "dev", "eth0")
        birds: list[tuple[Any, Path]] = []
        for i in range(n):
            ns = nss.add("b")
            nss.veth(sw, f"p{i}", ns, "eth0")
            sw.ip("link", "set", f"p{i}", "master", "br0")
            ns.ip("addr", "add", f"{peer_address(i)}/16", "dev", "eth0")
            d = work / f"bird{i}"
            d.mkdir()
            (d / "bird.conf").write_text(bird_config(i, d, bfd=False))
            birds.append((ns, d))
        bird_procs = [nss.spawn(ns, "bird", "-f", "-c", str(d / "bird.conf"), "-s", str(d / "bird.ctl"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for ns, d in birds]
        config = work / "cluster.yaml"
        write_cluster(config, cluster(n, bfd=False))
        run_dir = work / "run"
        with open(work / "bgpd.log", "ab") as log:
            bgpd = nss.spawn(t, str(BIN / "tortie-bgpd"), "--config", str(config), "--node", "t", "--run-dir",
                             str(run_dir), "--metrics-port", "0", "--log-level", "warning",
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sock = str(run_dir / "bgpd.sock")
        wait(lambda: len(neighbors(sock)) == n and all((d / "bird.ctl").exists() for _ns, d in birds), 120,
             f"tortie-bgpd with {n} peers and {n} BIRDs")
        time.sleep(5)  # past the first connection attempts before measuring (a warm-up, not a wait)
        pids = {"tortie-bgpd": bgpd.pid, **{f"bird{i}": p.pid for i, p in enumerate(bird_procs)}}
        without = window(pids, seconds, sock)
        for i, (ns, d) in enumerate(birds):
            (d / "bird.conf").write_text(bird_config(i, d, bfd=True))
            out = ns.exec("birdc", "-s", str(d / "bird.ctl"), "configure").stdout
            assert "Reconfigured" in out or "in progress" in out, out
        write_cluster(config, cluster(n, bfd=True))
        wait(lambda: sum((r.get("bfd_session") or {}).get("state") == "Up" for r in neighbors(sock)) == n, 180,
             f"{n} BFD sessions Up")
        time.sleep(5)  # the same warm-up: polls over, steady 300 ms rates
        with_bfd = window(pids, seconds, sock)
        assert with_bfd["bfd_failures"] == 0 and with_bfd["bfd_up"] == n, with_bfd
        bgpd.send_signal(signal.SIGTERM)
        bgpd.wait(timeout=30)
    finally:
        nss.close()
        if os.environ.get("KEEP") is None:  # KEEP=1: leave the logs for a look
            shutil.rmtree(work, ignore_errors=True)

    def share(w: dict[str, Any], who: str) -> float:
        cpu = w["cpu_share_of_one_core"]
        return float(sum(v for k, v in cpu.items() if k.startswith(who)))

    tortie_cost = share(with_bfd, "tortie-bgpd") - share(without, "tortie-bgpd")
    bird_cost = share(with_bfd, "bird") - share(without, "bird")
    tortie_kernel = with_bfd["of_which_kernel"]["tortie-bgpd"] - without["of_which_kernel"]["tortie-bgpd"]
    for w in (without, with_bfd):  # keep the file readable: one sum for the BIRDs
        for key in ("cpu_share_of_one_core", "of_which_kernel"):
            cpu = w[key]
            w[key] = {"tortie-bgpd": cpu["tortie-bgpd"],
                      f"bird x{n} (sum)": round(sum(v for k, v in cpu.items() if k.startswith("bird")), 5)}
    return {
        "peers": n, "interval_ms": 300, "multiplier": 3, "window_s": seconds,
        "tortie_bfd_cost_share_of_one_core": round(tortie_cost, 5),
        "tortie_bfd_cost_of_which_kernel": round(tortie_kernel, 5),
        "target_share_of_one_core": 0.05,
        "bird_bfd_cost_share_of_one_core": round(bird_cost, 5),
        "ratio_tortie_to_bird": round(tortie_cost / bird_cost, 2) if bird_cost > 0 else None,
        "without_bfd": without, "with_bfd": with_bfd,
        "bird": subprocess.run(["bird", "--version"], capture_output=True, text=True).stderr.strip(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=100)
    ap.add_argument("--window", type=float, default=30.0, help="seconds of steady state measured, each phase")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bfd.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/bfd.py needs root (network namespaces)")
    meta = results.Run()  # date, commit, machine, load and the exact command (bench/results.py)
    r = run(args.peers, args.window)
    r["run"] = meta.finish()
    w, wo = r["with_bfd"], r["without_bfd"]
    print(f"{r['peers']} peers, BFD 300 ms x 3, {r['window_s']:.0f} s windows "
          f"(load {wo['loadavg_1m_before_after']} / {w['loadavg_1m_before_after']}):")
    print(f"  tortie-bgpd without BFD {wo['cpu_share_of_one_core']['tortie-bgpd'] * 100:.2f} % of a core, with BFD "
          f"{w['cpu_share_of_one_core']['tortie-bgpd'] * 100:.2f} %: BFD costs "
          f"{r['tortie_bfd_cost_share_of_one_core'] * 100:.2f} % (target < 5 %), of which the kernel "
          f"{r['tortie_bfd_cost_of_which_kernel'] * 100:.2f} %")
    print(f"  BIRD 2 (the other {r['peers']} ends, one process each): BFD costs them "
          f"{r['bird_bfd_cost_share_of_one_core'] * 100:.2f} % of a core together; ratio {r['ratio_tortie_to_bird']}")
    print(f"  tortie sent {w['bfd_packets_sent_per_s']}/s, accepted {w['bfd_packets_received_per_s']}/s, "
          f"failures {w['bfd_failures']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
