"""Cluster scale, run by hand (not in CI): a route reflector with N clients and a full mesh of N speakers,
tortie beside BIRD 2 in the same run.

    sudo .venv/bin/python bench/scale.py                                   # reflector 100,300,1000; mesh 10,25,50,100
    sudo .venv/bin/python bench/scale.py --reflector 100,300 --mesh 10,25
    sudo .venv/bin/python bench/scale.py --sizes 10 --rounds 1             # smoke: both parts at N=10
    sudo .venv/bin/python bench/scale.py --plot-only                       # redraw plots from the results

(a) reflector: see bench/scale_reflector.py; (b) mesh: see bench/scale_mesh.py. Each size runs its
variants in alternating order per round; the JSON keeps every round and the medians. A size whose
estimated memory exceeds half of MemAvailable is skipped and recorded as such (say where it stops).
Results: bench/results/scale.json (one entry per part and N, each with date, commit, machine, load
and the exact command); plots: bench/results/scale-reflector.{png,svg}, scale-mesh.{png,svg}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots, results
from bench.netlab import BenchError, BenchLab, check_environment, cleanup_on_signals
from bench.scale_mesh import EST_BYTES, VARIANTS, MeshBench
from bench.scale_reflector import CLIENTS_PER_BIRD, ReflectorBench

MB = 1_000_000
REFLECTOR_KINDS = ("tortie", "bird")


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over the rounds (nested dicts too)."""
    out: dict[str, Any] = {}
    for key, first in rounds[0].items():
        if isinstance(first, dict):
            out[key] = medians([r[key] for r in rounds])
        elif isinstance(first, int | float):
            value = statistics.median(r[key] for r in rounds)
            out[key] = round(value, 3) if isinstance(value, float) else value
    return out


def summarise(per: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds that converged; a kind with none keeps the first failure."""
    out: dict[str, Any] = {}
    for kind, rounds in per.items():
        ok = [r for r in rounds if "failed" not in r]
        out[kind] = medians(ok) if ok else {"failed": rounds[0]["failed"]} if rounds else {}
    return out


def measure_or_fail(measure: Any, kind: str) -> dict[str, Any]:
    """One measurement; a convergence that fails (timeout, a daemon exiting) is recorded, not fatal,
    so the named peer is still measured in the same run."""
    try:
        return measure(kind)  # type: ignore[no-any-return]
    except BenchError as exc:
        print(f"    {kind}: failed: {exc}", flush=True)
        return {"failed": str(exc)}


def ordered(kinds: tuple[str, ...], r: int) -> tuple[str, ...]:
    return kinds if r % 2 == 0 else tuple(reversed(kinds))


# ---------------------------------------------------------------- targets (issue 12)


def _failed_targets(names: list[str], why: str) -> list[dict[str, Any]]:
    return [{"target": name, "value": f"did not converge: {why[:120]}", "met": False} for name in names]


def reflector_targets(n: int, m: dict[str, Any]) -> list[dict[str, Any]]:
    t, b = m["tortie"], m["bird"]
    names = {300: ["converged <= 1.5x BIRD's time", "CPU <= 5x BIRD's"],
             1000: ["converged <= 10 s", "peak RSS <= 100 MB", "CPU <= 10 s"]}.get(n, [])
    if "failed" in t:
        return _failed_targets(names, t["failed"])
    if n == 300 and "failed" in b:
        return []
    if n == 300:
        return [{"target": "converged <= 1.5x BIRD's time", "value": round(t["seconds"] / b["seconds"], 2),
                 "met": t["seconds"] <= 1.5 * b["seconds"]},
                {"target": "CPU <= 5x BIRD's", "value": round(t["cpu_seconds"] / max(b["cpu_seconds"], 0.01), 2),
                 "met": t["cpu_seconds"] <= 5 * b["cpu_seconds"]}]
    if n == 1000:
        return [{"target": "converged <= 10 s", "value": t["seconds"], "met": t["seconds"] <= 10},
                {"target": "peak RSS <= 100 MB", "value": round(t["peak_rss_bytes"] / MB, 1),
                 "met": t["peak_rss_bytes"] <= 100 * MB},
                {"target": "CPU <= 10 s", "value": t["cpu_seconds"], "met": t["cpu_seconds"] <= 10}]
    return []


def mesh_targets(n: int, m: dict[str, Any]) -> list[dict[str, Any]]:
    if n != 50 or not all(v in m for v in VARIANTS):
        return []
    t, tf, b = m["tortie"], m["tortie_felixd"], m["bird"]
    if "failed" in b:
        return []
    if "failed" in t or "failed" in tf:
        return _failed_targets(["tortie-bgpd converged (RIB) <= 1.5x BIRD's (RIB)",
                                "bgpd + felixd converged (kernel) <= 1.5x BIRD's (kernel)",
                                "tortie-bgpd peak RSS <= 25 MB per speaker"], (t.get("failed") or tf["failed"]))
    rss = t["peak_rss_bytes_per_speaker"]["max"]
    return [{"target": "tortie-bgpd converged (RIB) <= 1.5x BIRD's (RIB)",
             "value": round(t["rib_seconds"] / b["rib_seconds"], 2), "met": t["rib_seconds"] <= 1.5 * b["rib_seconds"]},
            {"target": "bgpd + felixd converged (kernel) <= 1.5x BIRD's (kernel)",
             "value": round(tf["kernel_seconds"] / b["kernel_seconds"], 2),
             "met": tf["kernel_seconds"] <= 1.5 * b["kernel_seconds"]},
            {"target": "tortie-bgpd peak RSS <= 25 MB per speaker", "value": round(rss / MB, 1), "met": rss <= 25 * MB}]


# ---------------------------------------------------------------- running


def run_reflector(n: int, rounds: int, timeout: float, keep: bool, per_bird: int,
                  clients_passive: bool = False) -> dict[str, Any]:
    lab = BenchLab("tsr", keep=keep)
    try:
        bench = ReflectorBench(lab, n, timeout, per_bird, clients_passive)
        per: dict[str, list[dict[str, Any]]] = {k: [] for k in REFLECTOR_KINDS}
        for r in range(rounds):
            for kind in ordered(REFLECTOR_KINDS, r):
                got = measure_or_fail(bench.measure, kind)
                per[kind].append(got)
                if "failed" in got:
                    continue
                print(f"  reflector N={n} round {r + 1}: {kind:6s} {got['seconds']:7.2f} s "
                      f"(ready {got['ready_seconds']:.2f} s + clients {got['converge_seconds']:.2f} s), "
                      f"CPU {got['cpu_seconds']:.2f} s, peak RSS {got['peak_rss_bytes'] / MB:.1f} MB; "
                      f"{got['client_birds']} client BIRDs: CPU {got['client_bird_cpu_seconds']:.1f} s, "
                      f"peak RSS {got['client_bird_peak_rss_bytes'] / MB:.0f} MB; "
                      f"machine busy {got['machine_busy_fraction']:.0%}", flush=True)
        med = summarise(per)
        return {"n": n, "rounds": rounds, "clients_per_bird": per_bird, "client_birds": len(bench.groups),
                "clients_passive": clients_passive,
                "median": med, "rounds_detail": per, "targets": reflector_targets(n, med)}
    finally:
        lab.close()


def run_mesh(n: int, rounds: int, timeout: float, keep: bool, variants: tuple[str, ...]) -> dict[str, Any]:
    lab = BenchLab("tsm", keep=keep)
    try:
        bench = MeshBench(lab, n, timeout)
        per: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for r in range(rounds):
            for variant in ordered(variants, r):
                got = measure_or_fail(bench.measure, variant)
                per[variant].append(got)
                if "failed" in got:
                    continue
                extra = f", kernel {got['kernel_seconds']:.2f} s" if "kernel_seconds" in got else ""
                print(f"  mesh N={n} round {r + 1}: {variant:13s} {got['seconds']:7.2f} s (RIB {got['rib_seconds']:.2f} s"
                      f"{extra}), new block {got['new_block_seconds']:.2f} s, CPU {got['cpu_seconds']:.1f} s, "
                      f"peak RSS/speaker {got['peak_rss_bytes_per_speaker']['max'] / MB:.1f} MB", flush=True)
        med = summarise(per)
        return {"n": n, "rounds": rounds, "variants": list(variants), "median": med, "rounds_detail": per,
                "targets": mesh_targets(n, med)}
    finally:
        lab.close()


def store(path: Path, part: str, n: int, entry: dict[str, Any]) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(part, {})[str(n)] = entry
    data[part] = dict(sorted(data[part].items(), key=lambda kv: int(kv[0])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reflector", type=sizes, default=[100, 300, 1000], help="client counts (comma-separated)")
    p.add_argument("--mesh", type=sizes, default=[10, 25, 50, 100], help="mesh sizes (comma-separated)")
    p.add_argument("--sizes", type=sizes, help="the same sizes for both parts (e.g. 10 for a smoke run)")
    p.add_argument("--only", choices=("reflector", "mesh"), help="run one part only")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"mesh variants ({','.join(VARIANTS)})")
    p.add_argument("--clients-per-bird", type=int, default=CLIENTS_PER_BIRD,
                   help="reflector clients per client BIRD process (K = ceil(N / this) BIRDs, each in its own "
                        f"namespace; default {CLIENTS_PER_BIRD}, so N <= {CLIENTS_PER_BIRD} runs one)")
    p.add_argument("--clients-passive", action="store_true",
                   help="the reflector connects, the clients only accept (see bench/scale_reflector.py)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--timeout", type=float, default=0, help="seconds one convergence may take (default 120 + 1 s per N)")
    p.add_argument("--keep", action="store_true", help="keep the work directories (configs, logs)")
    p.add_argument("--output", type=Path, default=results.RESULTS / "scale.json")
    p.add_argument("--plot-only", action="store_true", help="only redraw the plots from the results file")
    args = p.parse_args()
    plot_dir = args.output.parent
    if args.plot_only:
        for f in plots.scale_plots(json.loads(args.output.read_text()), plot_dir):
            print(f"plot: {f}")
        return 0
    check_environment("bird", "ss")
    cleanup_on_signals()
    variants = tuple(v for v in args.variants.split(",") if v)
    if unknown := set(variants) - set(VARIANTS):
        raise SystemExit(f"unknown variants: {', '.join(sorted(unknown))}")
    meta = results.Run()
    parts = [("reflector", args.sizes or args.reflector), ("mesh", args.sizes or args.mesh)]
    failed = False
    for part, ns in parts:
        if args.only and part != args.only:
            continue
        for n in ns:
            timeout = args.timeout or 120 + n
            load_start = results.load()
            need = n * n * 700 if part == "reflector" else n * max(EST_BYTES[v] for v in variants)
            avail = mem_available()
            print(f"{part} N={n} (load {load_start}, about {need / 2**30:.1f} GiB of "
                  f"{avail / 2**30:.1f} GiB available)", flush=True)
            if need > avail // 2:
                print(f"  skipped: needs about {need / 2**30:.1f} GiB, more than half of what is available", flush=True)
                entry: dict[str, Any] = {"n": n, "skipped": f"estimated {need / 2**30:.1f} GiB of "
                                         f"{avail / 2**30:.1f} GiB available"}
            else:
                t0 = time.perf_counter()
                try:
                    entry = (run_reflector(n, args.rounds, timeout, args.keep, args.clients_per_bird,
                                           args.clients_passive)
                             if part == "reflector"
                             else run_mesh(n, args.rounds, timeout, args.keep, variants))
                except BenchError as exc:
                    print(f"  failed: {exc}", flush=True)
                    entry = {"n": n, "failed": str(exc)}
                    failed = True
                print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
                if any("failed" in m for m in entry.get("median", {}).values()):
                    failed = True
                for t in entry.get("targets", []):
                    print(f"  {'PASS' if t['met'] else 'FAIL'}  {t['target']}: {t['value']}", flush=True)
            entry["run"] = {**meta.finish(), "load_start": load_start}  # this entry's load, not the invocation's
            store(args.output, part, n, entry)
    for f in plots.scale_plots(json.loads(args.output.read_text()), plot_dir):
        print(f"plot: {f}")
    print(f"results: {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
