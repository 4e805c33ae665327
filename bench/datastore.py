"""The etcd datastore: a daemon's start with 1,000 Nodes and 1,000 block affinities, and one apply
reaching the kernels of all lab hosts. Each against a named peer in the same run: the cluster file
holding the same resources (start), and the lab on the cluster file (apply -> kernels).

    sudo .venv/bin/python bench/datastore.py                 # 1,000 nodes, 3 rounds
    sudo .venv/bin/python bench/datastore.py --nodes 200 --rounds 1 --no-lab   # quick look

Start = `load()` (one transaction of range reads at one revision, decode, validate) + `watch()` until its
stream is established, as tortie-bgpd and tortie-felixd do at start. etcd: three members (Debian's
etcd-server 3.4) on 127.0.1.1-3 inside a namespace made for the run. Also timed: `etcdctl get --prefix`
of the same keys (etcd's own client, reading only). Apply -> kernels: a pool's mode switched on master
(one transaction written from inside master's namespace), until `ip -ts monitor route` on every host
shows the route change; the time is from the write's commit to the last host's kernel. Targets (issue
13): start under 1 s, one change to every kernel under 1 s. Results: bench/results/datastore.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datastore.calico_keys import affinity_key, block_key, resource_key  # noqa: E402
from datastore.calico_values import encode_affinity, encode_block, encode_resource  # noqa: E402
from datastore.etcd_client import ClientConfig, Put  # noqa: E402
from datastore.etcdstore import EtcdDatastore  # noqa: E402
from datastore.filestore import FileDatastore  # noqa: E402
from lab.etcd import EtcdCluster  # noqa: E402
from lab.netns import NetnsSet  # noqa: E402
from proto.resources import BlockAffinity, ClusterModel, IPPool, Node, block_affinity_name  # noqa: E402
from proto.selector import ALL  # noqa: E402


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    from pyroute2.netns import popns, pushns

    pushns(netns)
    try:
        yield
    finally:
        popns()


def cluster_model(n: int) -> ClusterModel:
    pool = IPPool(name="pods", cidr=ipaddress.ip_network("10.128.0.0/9"), block_size=26, vxlan_mode="Always",
                  node_selector=ALL)
    nodes, blocks = [], []
    subnets = pool.blocks()
    for i in range(n):
        name = f"node-{i:04d}"
        nodes.append(Node(name=name, ipv4_address=ipaddress.ip_interface(f"10.{i // 250}.{i % 250}.10/16")))
        cidr = next(subnets)
        blocks.append(BlockAffinity(name=block_affinity_name(name, cidr), node=name, cidr=cidr))
    return ClusterModel([pool, *nodes, *blocks])


def seed(ds: EtcdDatastore, model: ClusterModel) -> None:
    ds.client.delete_prefix("/calico/")
    puts: list[Put] = []
    for r in model.resources:
        if isinstance(r, BlockAffinity):
            puts.append(Put(affinity_key(r.node, r.cidr), encode_affinity(r)))
            puts.append(Put(block_key(r.cidr), encode_block(r.cidr, r.node)))
        else:
            puts.append(Put(resource_key(r.kind, r.name), encode_resource(r)))
    for i in range(0, len(puts), 100):  # etcd's default limit is 128 operations a transaction
        ds.client.txn([], puts[i:i + 100])


def time_start_etcd(ds: EtcdDatastore) -> tuple[float, int]:
    t0 = time.perf_counter()
    model = ds.load()
    watch = ds.watch(initial=model)
    if not watch.following.wait(30):
        raise RuntimeError("the watch never started")
    took = time.perf_counter() - t0
    watch.close()
    return took, len(model.resources)


def time_start_file(path: Path) -> tuple[float, int]:
    store = FileDatastore(path)
    t0 = time.perf_counter()
    model = store.load()
    watch = store.watch(initial=model)
    took = time.perf_counter() - t0
    watch.close()
    return took, len(model.resources)


def start_bench(nodes: int, rounds: int, work: Path) -> dict[str, object]:
    nets = NetnsSet(prefix="bde")
    try:
        ns = nets.add("etcd")
        for i in (1, 2, 3):
            ns.ip("addr", "add", f"127.0.1.{i}/8", "dev", "lo")
        ec = EtcdCluster.create(work / "etcd", [(ns, f"127.0.1.{i}") for i in (1, 2, 3)])
        ec.start()
        try:
            model = cluster_model(nodes)
            file_path = work / "cluster.yaml"
            FileDatastore(file_path).transact(lambda m: model)
            with inside(ns.name):
                ds = EtcdDatastore(ClientConfig(tuple(ec.endpoints)))
                seed(ds, model)
                etcd_t, file_t, ctl_t = [], [], []
                count = 0
                for _ in range(rounds):
                    took, count = time_start_etcd(ds)
                    etcd_t.append(took)
                    file_t.append(time_start_file(file_path)[0])
                    t0 = time.perf_counter()
                    ec.etcdctl("get", "--prefix", "/calico/", "-w", "json", netns=ns)
                    ctl_t.append(time.perf_counter() - t0)
                ds.close()
        finally:
            ec.stop()
    finally:
        nets.close()
    etcd_s, file_s = statistics.median(etcd_t), statistics.median(file_t)
    return {"nodes": nodes, "block_affinities": nodes, "resources": count,
            "etcd_start_s": round(etcd_s, 4), "file_start_s": round(file_s, 4),
            "ratio_etcd_to_file": round(etcd_s / file_s, 2),
            "etcdctl_get_prefix_s": round(statistics.median(ctl_t), 4),
            "target_start_s": 1.0, "all_times_s": {"etcd": etcd_t, "file": file_t, "etcdctl": ctl_t}}


# --- one apply to every kernel ------------------------------------------------------------------

_TS = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)")

APPLY = """
import sys, time
from datastore import open_datastore
from proto.resources import load_resources
store = open_datastore(sys.argv[1])
res = load_resources(open(sys.argv[2]).read()).resources
store.load()
t = time.time()
store.apply(res)
print(t)
"""


def apply_bench(datastore: str, rounds: int, work: Path) -> list[float]:
    from lab.cluster import Lab
    from lab.topology import SEED_CLUSTER

    lab = Lab(work / f"lab-{datastore}", prefix=f"bd{secrets.token_hex(2)}-")
    times: list[float] = []
    try:
        lab.up(SEED_CLUSTER, datastore=datastore)
        hosts = [h.name for h in lab.load().scenario.hosts]
        modes = [REPO / "configs" / "ippool-vxlan.yaml", REPO / "configs" / "ippool-direct.yaml"]
        block = "192.168.219.64/26"  # master's block, as the other hosts see it
        env = {**os.environ, "PYTHONPATH": str(REPO)}

        def settled(mode: int) -> bool:
            want = "vxlan.calico" if mode == 0 else "eth0"
            return all(re.search(rf"^{re.escape(block)} .*dev {want}", lab.ns(h).ip("route", "show", "proto", "80").stdout,
                                 re.M) for h in hosts if h != "master")

        for r in range(rounds * 2 + 1):
            mode = r % 2
            logs = {h: tempfile.TemporaryFile("w+") for h in hosts}  # noqa: SIM115 - closed with the files below
            mons = {h: subprocess.Popen(["ip", "-ts", "-n", lab.ns(h).name, "monitor", "route"], stdout=logs[h])
                    for h in hosts}
            time.sleep(0.3)  # `ip monitor` subscribes silently; a bench (not a test) may simply wait
            out = subprocess.run(["ip", "netns", "exec", lab.ns("master").name, sys.executable, "-c", APPLY,
                                  str(lab.daemon_config), str(modes[mode])], capture_output=True, text=True,
                                 env=env, timeout=60, check=True)
            t_commit = float(out.stdout.strip().splitlines()[-1])
            deadline = time.monotonic() + 30
            while not settled(mode) and time.monotonic() < deadline:
                time.sleep(0.05)
            for p in mons.values():
                p.terminate()
                p.wait()
            last = 0.0
            for h in hosts:
                if h == "master":
                    continue
                logs[h].seek(0)
                stamps = [dt.datetime.fromisoformat(m.group(1)).timestamp()
                          for line in logs[h] if block in line and (m := _TS.match(line))]
                last = max(last, max(stamps) if stamps else float("inf"))
            for f in logs.values():
                f.close()
            if r > 0:  # the first switch warms the daemons up (and leaves the seed's IPIP pool)
                times.append(last - t_commit)
    finally:
        lab.down()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-lab", action="store_true", help="skip the apply -> kernels part")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "datastore.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/datastore.py needs root (network namespaces)")
    with tempfile.TemporaryDirectory(prefix="tortie-bench-ds-") as tmp:
        work = Path(tmp)
        result: dict[str, object] = {"start": start_bench(args.nodes, args.rounds, work)}
        if not args.no_lab:
            etcd_t = apply_bench("etcd", args.rounds, work)
            file_t = apply_bench("file", args.rounds, work)
            result["apply_to_all_kernels"] = {
                "hosts": 4, "etcd_median_s": round(statistics.median(etcd_t), 4),
                "file_median_s": round(statistics.median(file_t), 4),
                "ratio_etcd_to_file": round(statistics.median(etcd_t) / statistics.median(file_t), 2),
                "target_s": 1.0, "all_times_s": {"etcd": etcd_t, "file": file_t}}
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    result.update({
        "command": " ".join(["bench/datastore.py", *sys.argv[1:]]),
        "commit": commit, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load": os.getloadavg()},
    })
    start = result["start"]
    print(f"start with {args.nodes} Nodes + {args.nodes} block affinities ({start['resources']} resources), "  # type: ignore[index]
          f"median of {args.rounds}: etcd {start['etcd_start_s']:.3f} s, cluster file "  # type: ignore[index]
          f"{start['file_start_s']:.3f} s, ratio {start['ratio_etcd_to_file']:.2f}x; etcdctl get --prefix "  # type: ignore[index]
          f"{start['etcdctl_get_prefix_s']:.3f} s")  # type: ignore[index]
    if "apply_to_all_kernels" in result:
        a = result["apply_to_all_kernels"]
        print(f"one apply -> all 4 kernels: etcd {a['etcd_median_s']:.3f} s, cluster file "  # type: ignore[index]
              f"{a['file_median_s']:.3f} s, ratio {a['ratio_etcd_to_file']:.2f}x")  # type: ignore[index]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
