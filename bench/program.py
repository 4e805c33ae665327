"""felixd's kernel programming speed against `ip -batch`, in one run, in a throwaway namespace.

    sudo .venv/bin/python bench/program.py [--routes 100000] [--rounds 3]

For each round: install N routes through felixd's bulk netlink path and remove them again, then do
the same N routes with `ip -batch`; both in the same namespace, one after the other. Prints the
median times and ratios (target: felixd within 1.5x of ip -batch). Then, with N routes installed,
times single route changes from a feed frame to an acknowledged kernel write through the
raw socket felixd uses and through pyroute2, alternating (target: p99 under 2 ms). Results go to
bench/results/program.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results
from felixd.reconcile import Reconciler
from felixd.state import DesiredState, Op, RouteShape, route, route_map
from lab.netns import NetnsSet
from proto.feed import FeedRoute, RouteUpdate, encode_frame
from proto.feed_wire import WireDecoder, WireRoute

GATEWAY = "10.0.0.2"


def prefixes(n: int) -> list[str]:
    return [f"{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24" for i in range(n)]


def ip_batch(ns: str, lines: list[str]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        t0 = time.perf_counter()
        subprocess.run(["ip", "-n", ns, "-batch", path], check=True)
        return time.perf_counter() - t0
    finally:
        os.unlink(path)


def count_routes(ns: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "route", "show", "proto", "80"], capture_output=True, text=True,
                         check=True).stdout
    return out.count("\n")


async def run(n: int, rounds: int, samples: int) -> dict[str, object]:
    nss = NetnsSet(prefix="tkb")
    try:
        ns = nss.add("bench")
        peer = nss.add("peer")
        nss.veth(ns, "eth0", peer, "eth0")
        ns.ip("addr", "add", "10.0.0.1/24", "dev", "eth0")
        pfx = prefixes(n)
        routes = [route(p, gateway=GATEWAY, dev="eth0") for p in pfx]
        add_lines = [f"route add {p} via {GATEWAY} dev eth0 proto 80" for p in pfx]
        del_lines = [f"route del {p} via {GATEWAY} dev eth0 proto 80" for p in pfx]
        felix_add, felix_del, ip_add, ip_del, rec_add, rec_del = [], [], [], [], [], []
        async with Reconciler(ns.name) as rec:
            for _ in range(rounds):
                t0 = time.perf_counter()
                res = await rec.apply_routes(replace=routes, path="bulk")
                felix_add.append(time.perf_counter() - t0)
                assert not res.route_errors and count_routes(ns.name) == n, res.route_errors[:3]
                t0 = time.perf_counter()
                res = await rec.apply_routes(delete=routes, path="bulk")
                felix_del.append(time.perf_counter() - t0)
                assert not res.route_errors and count_routes(ns.name) == 0

                ip_add.append(ip_batch(ns.name, add_lines))
                assert count_routes(ns.name) == n
                ip_del.append(ip_batch(ns.name, del_lines))
                assert count_routes(ns.name) == 0

                # the whole reconcile (dump, diff, bulk write) from empty to N routes and back
                desired = DesiredState(routes=route_map(*routes))
                t0 = time.perf_counter()
                res = await rec.reconcile(desired)
                rec_add.append(time.perf_counter() - t0)
                assert res.routes_replaced == n and res.path == "bulk"
                t0 = time.perf_counter()
                res = await rec.reconcile(DesiredState())
                rec_del.append(time.perf_counter() - t0)
                assert res.routes_deleted == n

            # single changes over a full table: feed frame -> decoded route -> incremental write + ACK
            await rec.apply_routes(replace=routes, path="bulk")
            t0 = time.perf_counter()
            again = await rec.reconcile(DesiredState(routes=route_map(*routes)))
            resync_unchanged = time.perf_counter() - t0
            assert again.changes == 0
            # What felixd's main loop does after a start-up reconcile: move the big, long-lived state out
            # of the collector's way, so that a full collection does not stall a feed message by 100+ ms.
            gc.collect()
            gc.freeze()
            pauses: list[float] = []

            def on_gc(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    on_gc.t0 = time.perf_counter()  # type: ignore[attr-defined]
                else:
                    pauses.append(time.perf_counter() - on_gc.t0)  # type: ignore[attr-defined]

            gc.callbacks.append(on_gc)
            # both write paths for a single change, alternating: pyroute2 (one call) and the raw socket
            # (one sendmsg, on the event loop: what felixd uses)
            latencies: dict[str, list[float]] = {"incremental": [], "auto": []}
            decoder = WireDecoder()
            shapes: dict[bytes, RouteShape] = {}
            for i in range(2 * samples):
                path = "incremental" if i % 2 else "auto"
                gw = "10.0.0.3" if (i // 2) % 2 == 0 else GATEWAY
                frame = encode_frame(RouteUpdate(i, FeedRoute(pfx[i * 97 % n], gw, node="node-2")))
                t0 = time.perf_counter()
                decoder.receive_data(frame)
                (msg,) = decoder.frames()
                assert isinstance(msg, WireRoute)
                shape = shapes.get(msg.next_hop)
                if shape is None:  # as felixd's index does: one shape per next hop
                    shape = shapes[msg.next_hop] = RouteShape(gateway=msg.next_hop, dev="eth0")
                res = await rec.apply_ops([(Op.REPLACE, msg.prefix, shape, rec.protocol)], path=path)  # type: ignore[arg-type]
                latencies[path].append(time.perf_counter() - t0)
                assert res.routes_replaced == 1
            gc.callbacks.remove(on_gc)
            gc.unfreeze()
            await rec.apply_routes(delete=routes, path="bulk")
    finally:
        nss.close()

    def med(xs: list[float]) -> float:
        return round(statistics.median(xs), 4)

    def pct(xs: list[float], q: float) -> float:
        ms = sorted(x * 1000 for x in xs)
        return round(ms[min(len(ms) - 1, int(len(ms) * q))], 3)

    return {
        "routes": n,
        "rounds": rounds,
        "felixd_bulk_install_s": med(felix_add),
        "felixd_bulk_remove_s": med(felix_del),
        "ip_batch_install_s": med(ip_add),
        "ip_batch_remove_s": med(ip_del),
        "ratio_install": round(med(felix_add) / med(ip_add), 3),
        "ratio_remove": round(med(felix_del) / med(ip_del), 3),
        "ratio_install_plus_remove": round((med(felix_add) + med(felix_del)) / (med(ip_add) + med(ip_del)), 3),
        "felixd_reconcile_empty_to_full_s": med(rec_add),
        "felixd_reconcile_full_to_empty_s": med(rec_del),
        "felixd_resync_unchanged_s": round(resync_unchanged, 4),
        "single_change_samples": samples,
        # felixd's path (the raw socket, inline on the event loop); pyroute2's alongside, for comparison
        "single_change_median_ms": pct(latencies["auto"], 0.5),
        "single_change_p99_ms": pct(latencies["auto"], 0.99),
        "single_change_max_ms": pct(latencies["auto"], 1.0),
        "single_change_pyroute2_median_ms": pct(latencies["incremental"], 0.5),
        "single_change_pyroute2_p99_ms": pct(latencies["incremental"], 0.99),
        "gc_pauses_during_single_changes_ms": sorted(round(p * 1000, 2) for p in pauses if p > 0.001),
        "all_times_s": {"felixd_install": felix_add, "felixd_remove": felix_del, "ip_install": ip_add,
                        "ip_remove": ip_del},

    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=200, help="single-change latency samples")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "program.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/program.py needs root (network namespaces)")
    meta = results.Run()
    result = asyncio.run(run(args.routes, args.rounds, args.samples))
    result["run"] = meta.finish()
    print(f"{result['routes']} routes, median of {result['rounds']}:")
    print(f"  install: felixd bulk {result['felixd_bulk_install_s']:.3f} s, ip -batch "
          f"{result['ip_batch_install_s']:.3f} s, ratio {result['ratio_install']:.2f}x")
    print(f"  remove:  felixd bulk {result['felixd_bulk_remove_s']:.3f} s, ip -batch "
          f"{result['ip_batch_remove_s']:.3f} s, ratio {result['ratio_remove']:.2f}x")
    print(f"  full reconcile empty->full {result['felixd_reconcile_empty_to_full_s']:.3f} s, "
          f"full->empty {result['felixd_reconcile_full_to_empty_s']:.3f} s, "
          f"unchanged resync {result['felixd_resync_unchanged_s']:.3f} s")
    print(f"  single change (feed frame -> kernel ACK): raw socket median "
          f"{result['single_change_median_ms']:.2f} ms, p99 {result['single_change_p99_ms']:.2f} "
          f"ms; pyroute2 median {result['single_change_pyroute2_median_ms']:.2f} ms, p99 "
          f"{result['single_change_pyroute2_p99_ms']:.2f} ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
