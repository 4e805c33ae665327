"""felixd's share of the data path, feed frame to kernel, against `ip -batch` in the same run.

    sudo .venv/bin/python bench/feed_to_kernel.py [--routes 100000] [--rounds 3] [--samples 1000]

A scripted route feed server (bgpd's side of the contract, built with proto.feed's encoder) serves a
real tortie-felixd process in a throwaway namespace (prefix `tkf`). Once felixd has synced an empty
snapshot, the feed streams N routes as deltas (`via 172.31.0.2 dev eth0`, direct mode), 4096 frames
per write as bgpd writes them; the time runs from the first write until the kernel has announced
all N routes (a netlink listener in the namespace counts felixd's RTM_NEWROUTEs). Then withdraws
of all N, timed the same way. In a second namespace set up identically, `ip -batch` installs and
removes the same N routes; the order alternates per round. felixd's peak RSS is its VmHWM.

With N routes installed, single route changes are timed from the feed frame's write to the
kernel's announcement of the new route (p50, p99, max over `--samples` changes). Each is followed
by its named peer: the same change written by the bench itself straight to netlink in the second
namespace (also holding N routes) and timed to its announcement the same way. That is what the
kernel and the measuring side's own wake-up cost under the machine's load at that moment; felixd's
share is the difference. Changes of felixd's over 2 ms are listed with when they happened.

`--felixd-src DIR` runs felixd from another source tree (e.g. `git archive` of an older commit), to
measure before and after on the same machine in one sitting. Results go to
bench/results/feed_to_kernel.json, keyed by the run's label, with date, commit, machine and the
exact command.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results
from felixd.kernel.netns import NetnsWorker
from lab.netns import Netns, NetnsSet
from proto.feed import (
    FeedEncoder,
    FrameType,
    prefix_wire_from_bgp,
    route_frame_wire,
    route_tail,
    withdraw_frame_wire,
)
from runtime.control import ControlError, call

HEAD = "apiVersion: projectcalico.org/v3\n"
CLUSTER = "---\n".join([
    f"{HEAD}kind: Node\nmetadata: {{name: me}}\nspec: {{bgp: {{ipv4Address: 172.31.0.1/24}}}}\n",
    f"{HEAD}kind: Node\nmetadata: {{name: peer}}\nspec: {{bgp: {{ipv4Address: 172.31.0.2/24}}}}\n",
    f"{HEAD}kind: Node\nmetadata: {{name: peer2}}\nspec: {{bgp: {{ipv4Address: 172.31.0.3/24}}}}\n",
    f"{HEAD}kind: IPPool\nmetadata: {{name: pods}}\nspec: {{cidr: 10.0.0.0/8, blockSize: 26}}\n",
])
SLICE = 4096  # frames per write, as bgpd's feed server writes them
GROUP_IPV4_ROUTE = 0x40


def prefix_text(i: int) -> str:
    v = (10 << 24) + (i + 1024) * 64
    return f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}/26"


def prefix_wire(i: int) -> bytes:
    v = (10 << 24) + (i + 1024) * 64
    return prefix_wire_from_bgp(4, bytes((26,)) + v.to_bytes(4, "big"))


class Feed:
    """bgpd's side of the feed, scripted: an empty snapshot, then what the benchmark writes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.enc = FeedEncoder(epoch=1)
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, self.path)

    async def _client(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.enc = FeedEncoder(epoch=1)
        writer.write(self.enc.snapshot([]))
        self.writer = writer
        self.connected.set()

    def frames(self, kind: str, indexes: range | list[int], next_hop: str = "172.31.0.2") -> list[bytes]:
        """Route (or withdraw) frames, numbered on from the last frame sent."""
        out = []
        flags, tail = route_tail(next_hop, None)
        seq = self.enc.next_seq
        for i in indexes:
            out.append(route_frame_wire(seq, flags, prefix_wire(i), tail) if kind == "route"
                       else withdraw_frame_wire(seq, prefix_wire(i)))
            seq += 1
        self.enc.next_seq = seq
        return out

    async def write(self, frames: list[bytes]) -> None:
        assert self.writer is not None
        for start in range(0, len(frames), SLICE):
            self.writer.write(b"".join(frames[start:start + SLICE]))
            await self.writer.drain()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.server.close()
        await self.server.wait_closed()


class RouteWatch:
    """The kernel's route notifications in a namespace, read on the event loop."""

    def __init__(self, ns: str, protocol: int = 80) -> None:
        worker = NetnsWorker(ns)
        self.sock = worker.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        worker.close()
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: lose nothing of a load
        self.sock.bind((0, GROUP_IPV4_ROUTE))
        self.sock.setblocking(False)
        self.protocol = protocol
        self.added: set[bytes] = set()
        self.removed: set[bytes] = set()
        self.last: dict[bytes, tuple[float, bytes]] = {}  # dst -> (time seen, gateway) of the last NEWROUTE
        self.waiters: list[tuple[object, asyncio.Future[float]]] = []
        self.lost = 0
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                self.lost += 1
                continue
            now = time.perf_counter()
            pos = 0
            while pos + 28 <= len(data):
                length, mtype = struct.unpack_from("=IH", data, pos)
                if length < 16:
                    break
                if mtype in (24, 25) and data[pos + 21] == self.protocol:
                    dst = gw = b""
                    a = pos + 28
                    while a + 4 <= pos + length:
                        alen, kind = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if kind == 1:
                            dst = bytes(data[pos + 17:pos + 18]) + data[a + 4:a + alen]
                        elif kind == 5:
                            gw = data[a + 4:a + alen]
                        a += (alen + 3) & ~3
                    if mtype == 24:
                        self.added.add(dst)
                        self.last[dst] = (now, gw)
                    else:
                        self.removed.add(dst)
                pos += (length + 3) & ~3
        for cond, fut in list(self.waiters):
            if not fut.done() and cond():  # type: ignore[operator]
                fut.set_result(time.perf_counter())
                self.waiters.remove((cond, fut))

    async def until(self, cond: object, timeout: float) -> float:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if cond():  # type: ignore[operator]
            return time.perf_counter()
        self.waiters.append((cond, fut))
        return await asyncio.wait_for(fut, timeout)

    def reset(self) -> None:
        self.added, self.removed = set(), set()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


class DirectWriter:
    """The named peer of a single change: the same route replace written straight to the kernel by the
    measuring process itself (one RTM_NEWROUTE on a raw netlink socket, no ACK asked). Its latency is
    the kernel's and the measuring side's own wake-up under the machine's load, without the feed and
    felixd's process hop: what felixd adds is the difference."""

    def __init__(self, ns: Netns, dev: str = "eth0", protocol: int = 80) -> None:
        worker = NetnsWorker(ns.name)
        self.sock = worker.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        worker.close()
        self.sock.bind((0, 0))
        link = subprocess.run(["ip", "-n", ns.name, "-o", "link", "show", dev], capture_output=True,
                              text=True, check=True).stdout
        self.oif = int(link.split(":", 1)[0])
        self.protocol = protocol
        self.seq = 1

    def replace(self, i: int, gateway: bytes) -> None:
        dst = prefix_wire(i)[2:6]
        attrs = (struct.pack("=HH", 8, 1) + dst + struct.pack("=HH", 8, 5) + gateway
                 + struct.pack("=HHI", 8, 4, self.oif))
        # family, dst_len, src_len, tos, table main, protocol, scope universe, type unicast, flags
        rtmsg = struct.pack("=BBBBBBBBI", socket.AF_INET, 26, 0, 0, 254, self.protocol, 0, 1, 0)
        body = rtmsg + attrs
        # RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_REPLACE | NLM_F_CREATE
        self.sock.send(struct.pack("=IHHII", 16 + len(body), 24, 0x1 | 0x100 | 0x400, self.seq, 0) + body)
        self.seq += 1

    def close(self) -> None:
        self.sock.close()


# The second peer of a single change: the least a process between the feed and the kernel can do. It
# reads route frames from a feed socket and writes each as one RTM_NEWROUTE (prefix and next hop
# copied from the frame's octets, no ACK asked): two processes woken per change, as with felixd, and
# nothing else. Run with the interpreter felixd runs with, inside the peer's namespace.
RELAY = """
import socket, struct, sys
path, oif, route_type, protocol = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
feed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
feed.connect(path)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
nl.bind((0, 0))
rtmsg_head = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, protocol, 0, 1, 0)
buf, seq = b"", 1
while data := feed.recv(1 << 16):
    buf += data
    while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
        end = 4 + int.from_bytes(buf[:4], "big")
        frame, buf = buf[:end], buf[end:]
        if frame[4] != route_type or frame[14] != 4:
            continue
        attrs = (struct.pack("=HH", 8, 1) + frame[16:20] + struct.pack("=HH", 8, 5) + frame[21:25]
                 + struct.pack("=HHI", 8, 4, oif))
        body = rtmsg_head[:1] + frame[15:16] + rtmsg_head[2:] + attrs
        nl.send(struct.pack("=IHHII", 16 + len(body), 24, 0x501, seq, 0) + body)
        seq += 1
"""


def percentile(sorted_ms: list[float], q: float) -> float:
    return round(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))], 3)


def watch_key(i: int) -> bytes:
    return bytes((26,)) + prefix_wire(i)[2:]


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int, system: bool | None = None) -> float:
    """User plus system CPU seconds of a process and its threads (only one of them with `system`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, kernel = int(fields[11]), int(fields[12])
    ticks = user + kernel if system is None else (kernel if system else user)
    return ticks / os.sysconf("SC_CLK_TCK")


def ip_batch(ns: Netns, lines: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `ip -batch` running `lines`."""
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(["ip", "-n", ns.name, "-batch", path], check=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    finally:
        os.unlink(path)


def host(nss: NetnsSet, label: str) -> Netns:
    ns, peer = nss.add(label), nss.add(label[:2] + "p")
    nss.veth(ns, "eth0", peer, "eth0")
    ns.ip("addr", "add", "172.31.0.1/24", "dev", "eth0")
    peer.ip("addr", "add", "172.31.0.2/24", "dev", "eth0")
    return ns


async def run(n: int, rounds: int, samples: int, felixd_src: str | None, sample_timeout: float) -> dict[str, object]:
    nss = NetnsSet(prefix="tkf")
    tmp = Path(tempfile.mkdtemp(prefix="tkf-"))
    proc = None
    try:
        ns, ipns = host(nss, "felix"), host(nss, "ipb")
        (tmp / "cluster.yaml").write_text(CLUSTER)
        run_dir = tmp / "run"
        run_dir.mkdir()
        feed = Feed(str(run_dir / "feed.sock"))
        await feed.start()
        env = dict(os.environ)
        if felixd_src:
            env["PYTHONPATH"] = felixd_src
        cmd = [sys.executable, "-m", "felixd", "--config", str(tmp / "cluster.yaml"), "--node", "me",
               "--run-dir", str(run_dir), "--resync-interval", "3600", "--metrics-port", "0", "--log-level", "warning"]
        log = open(tmp / "felixd.log", "wb")  # noqa: SIM115 - the process owns it
        # cwd: `python -m` puts it first on sys.path, so it decides which felixd runs
        proc = nss.spawn(ns, *cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=felixd_src or str(tmp))
        sock = str(run_dir / "felixd.sock")
        deadline = time.monotonic() + 60
        while True:
            try:
                st = call(sock, "status")
                if st["ready"] and st["feed_synced"]:
                    break
            except (OSError, ControlError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit("felixd did not sync:\n" + (tmp / "felixd.log").read_text()[-3000:])
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the snapshot's full sync finish (an empty one: nothing to write)
        baseline_rss = vm_kib(proc.pid, "VmRSS")
        watch = RouteWatch(ns.name)
        ip_watch = RouteWatch(ipns.name)  # the same notification listener on both sides: equal kernel work
        add_lines = [f"route add {prefix_text(i)} via 172.31.0.2 dev eth0 proto 80" for i in range(n)]
        del_lines = [f"route del {prefix_text(i)} via 172.31.0.2 dev eth0 proto 80" for i in range(n)]
        keys = [watch_key(i) for i in range(n)]
        felix_add, felix_del, ip_add, ip_del, felix_cpu, ip_cpu, felix_sys = [], [], [], [], [], [], []

        async def felix_round() -> None:
            frames = feed.frames("route", range(n))
            watch.reset()
            cpu0, sys0 = cpu_seconds(proc.pid), cpu_seconds(proc.pid, system=True)
            t0 = time.perf_counter()
            await feed.write(frames)
            written = time.perf_counter()
            t1 = await watch.until(lambda: len(watch.added) >= n, 300)
            felix_add.append(t1 - t0)
            print(f"  all frames written after {written - t0:.3f} s, all routes in after {t1 - t0:.3f} s", flush=True)
            felix_cpu.append(cpu_seconds(proc.pid) - cpu0)
            felix_sys.append(cpu_seconds(proc.pid, system=True) - sys0)
            assert all(k in watch.added for k in keys[:: max(1, n // 1000)])
            frames = feed.frames("withdraw", range(n))
            t0 = time.perf_counter()
            await feed.write(frames)
            t1 = await watch.until(lambda: len(watch.removed) >= n, 300)
            felix_del.append(t1 - t0)

        def ip_round() -> None:
            wall, cpu = ip_batch(ipns, add_lines)
            ip_add.append(wall)
            ip_cpu.append(cpu)
            ip_del.append(ip_batch(ipns, del_lines)[0])

        for r in range(rounds):
            if r % 2 == 0:
                await felix_round()
                ip_round()
            else:
                ip_round()
                await felix_round()
            print(f"round {r + 1}: felixd {felix_add[-1]:.3f} s in, {felix_del[-1]:.3f} s out; ip -batch "
                  f"{ip_add[-1]:.3f} s in, {ip_del[-1]:.3f} s out", flush=True)

        # N routes installed again, then single changes: frame written -> kernel announces the new route
        watch.reset()
        await feed.write(feed.frames("route", range(n)))
        await watch.until(lambda: len(watch.added) >= n, 300)
        await asyncio.sleep(1.0)
        peak_rss = vm_kib(proc.pid, "VmHWM")
        loaded_rss = vm_kib(proc.pid, "VmRSS")
        # the peer's namespace holds the same N routes, written the same way, so both kernels hold N
        ip_watch.reset()
        ip_batch(ipns, add_lines)
        # read their N notifications before sampling: left queued, the first sample's clock would run
        # while this process parses them (a 2 s "change" at 100k routes)
        await ip_watch.until(lambda: len(ip_watch.added) >= n, 300)
        direct = DirectWriter(ipns)
        relay_feed = Feed(str(run_dir / "relay.sock"))
        await relay_feed.start()
        relay = nss.spawn(ipns, sys.executable, "-c", RELAY, relay_feed.path, str(direct.oif),
                          str(int(FrameType.ROUTE)), "80", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.wait_for(relay_feed.connected.wait(), 30)
        relay_latencies: list[float] = []
        latencies: list[float] = []
        direct_latencies: list[float] = []
        worst: list[tuple[float, float]] = []  # (ms, seconds into the sampling) of felixd's slow changes
        timeouts = 0
        counts_before = call(sock, "status")["counts"]
        sampling = time.perf_counter()
        # the measuring side must not pause for its own collector (it holds 100k-route sets)
        gc.collect()
        gc.freeze()
        gw_raw = {"172.31.0.2": bytes((172, 31, 0, 2)), "172.31.0.3": bytes((172, 31, 0, 3))}
        assert feed.writer is not None
        for s in range(samples):
            i = (s * 7919) % n
            gw = "172.31.0.3" if (s // n) % 2 == 0 else "172.31.0.2"
            (frame,) = feed.frames("route", [i], gw)
            key, want = watch_key(i), gw_raw[gw]
            t0 = time.perf_counter()
            feed.writer.write(frame)
            try:
                t1 = await watch.until(lambda k=key, w=want, t=t0: k in watch.last and watch.last[k][1] == w
                                       and watch.last[k][0] >= t, sample_timeout)
            except TimeoutError:
                timeouts += 1
                continue
            latencies.append(t1 - t0)
            if t1 - t0 > 0.002:
                worst.append((round((t1 - t0) * 1000, 3), round(t0 - sampling, 3)))
            # then the same change written straight to the peer's kernel, for the same load
            t0 = time.perf_counter()
            direct.replace(i, want)
            try:
                t1 = await ip_watch.until(lambda k=key, w=want, t=t0: k in ip_watch.last
                                          and ip_watch.last[k][1] == w and ip_watch.last[k][0] >= t,
                                          sample_timeout)
                direct_latencies.append(t1 - t0)
            except TimeoutError:
                pass
            # and through the minimal relay process, to the peer's kernel
            gw_back = gw_raw["172.31.0.2"] if want == gw_raw["172.31.0.3"] else gw_raw["172.31.0.3"]
            (frame,) = relay_feed.frames("route", [i], "172.31.0.2" if gw == "172.31.0.3" else "172.31.0.3")
            t0 = time.perf_counter()
            relay_feed.writer.write(frame)  # type: ignore[union-attr]
            try:
                t1 = await ip_watch.until(lambda k=key, w=gw_back, t=t0: k in ip_watch.last
                                          and ip_watch.last[k][1] == w and ip_watch.last[k][0] >= t,
                                          sample_timeout)
                relay_latencies.append(t1 - t0)
            except TimeoutError:
                pass
        direct.close()
        relay.terminate()
        relay.wait(timeout=10)
        await relay_feed.close()
        counts_after = call(sock, "status")["counts"]
        # what felixd did while sampling (full syncs, host reads, index builds, deltas): a slow change
        # is explained here or by the machine's load
        sampling_counts = {k: v - counts_before.get(k, 0) for k, v in counts_after.items()
                           if isinstance(v, int) and v != counts_before.get(k, 0)}
        peak_rss = max(peak_rss, vm_kib(proc.pid, "VmHWM"))
        watch.close()
        ip_watch.close()
        proc.terminate()
        proc.wait(timeout=30)
        await feed.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        nss.close()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(xs: list[float]) -> float:
        return round(statistics.median(xs), 4)

    lat_ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    direct_ms = sorted(x * 1000 for x in direct_latencies) or [float("nan")]
    relay_ms = sorted(x * 1000 for x in relay_latencies) or [float("nan")]
    return {
        "routes": n, "rounds": rounds,
        "felixd_install_s": med(felix_add), "felixd_remove_s": med(felix_del),
        "ip_batch_install_s": med(ip_add), "ip_batch_remove_s": med(ip_del),
        "ratio_install": round(med(felix_add) / med(ip_add), 3),
        "ratio_remove": round(med(felix_del) / med(ip_del), 3),
        "felixd_install_cpu_s": med(felix_cpu),
        "felixd_install_system_cpu_s": med(felix_sys),  # the kernel's share (route inserts), in felixd's context
        "ip_batch_install_cpu_s": med(ip_cpu),
        # CPU against CPU: what each costs the machine, whatever else runs on it
        "ratio_install_cpu": round(med(felix_cpu) / med(ip_cpu), 3),
        "felixd_rss_baseline_mib": round(baseline_rss / 1024, 1),
        "felixd_rss_loaded_mib": round(loaded_rss / 1024, 1),
        "felixd_rss_peak_mib": round(peak_rss / 1024, 1),
        "single_change_samples": samples,
        "single_change_timeouts": timeouts,
        "single_change_timeout_s": sample_timeout,
        "single_change_p50_ms": round(statistics.median(lat_ms), 3),
        "single_change_p99_ms": round(lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))], 3),
        "single_change_max_ms": round(lat_ms[-1], 3),
        "single_change_over_2ms": sum(1 for x in lat_ms if x > 2),
        "single_change_worst": sorted(worst, reverse=True)[:20],
        "felixd_counts_while_sampling": sampling_counts,
        # the named peer: the same change written straight to netlink by this process, same load
        "direct_change_p50_ms": percentile(direct_ms, 0.5),
        "direct_change_p99_ms": percentile(direct_ms, 0.99),
        "direct_change_max_ms": round(direct_ms[-1], 3),
        "direct_change_over_2ms": sum(1 for x in direct_ms if x > 2),
        # and through a minimal relay process (two processes woken per change, as with felixd)
        "relay_change_samples": len(relay_latencies),
        "relay_change_p50_ms": percentile(relay_ms, 0.5),
        "relay_change_p99_ms": percentile(relay_ms, 0.99),
        "relay_change_max_ms": round(relay_ms[-1], 3),
        "relay_change_over_2ms": sum(1 for x in relay_ms if x > 2),
        "all_times_s": {"felixd_install": felix_add, "felixd_remove": felix_del, "ip_install": ip_add,
                        "ip_remove": ip_del},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=1000, help="single-change latency samples")
    ap.add_argument("--felixd-src", help="run felixd from this source tree instead (before/after runs)")
    ap.add_argument("--felixd-commit", help="the commit --felixd-src was taken from (recorded with the results)")
    ap.add_argument("--sample-timeout", type=float, default=30.0, help="give up on one change after this long")
    ap.add_argument("--label", default="current", help="key of this run in the results file")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "feed_to_kernel.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/feed_to_kernel.py needs root (network namespaces)")
    meta = results.Run()
    result = asyncio.run(run(args.routes, args.rounds, args.samples, args.felixd_src, args.sample_timeout))
    result["run"] = meta.finish()
    # the felixd measured: this tree at the recorded commit, or another source tree
    result["felixd_src"] = args.felixd_src or str(results.REPO)
    result["felixd_commit"] = args.felixd_commit if args.felixd_src else result["run"]["commit"]
    print(f"{result['routes']} routes as feed deltas, median of {result['rounds']}:")
    print(f"  install: felixd {result['felixd_install_s']:.3f} s (CPU {result['felixd_install_cpu_s']:.2f} s, "
          f"{result['felixd_install_system_cpu_s']:.2f} s of it in the kernel), "
          f"ip -batch {result['ip_batch_install_s']:.3f} s (CPU {result['ip_batch_install_cpu_s']:.2f} s), "
          f"ratio {result['ratio_install']:.2f}x (CPU {result['ratio_install_cpu']:.2f}x)")
    print(f"  remove:  felixd {result['felixd_remove_s']:.3f} s, ip -batch {result['ip_batch_remove_s']:.3f} s, "
          f"ratio {result['ratio_remove']:.2f}x")
    print(f"  felixd RSS: {result['felixd_rss_baseline_mib']} MiB idle, {result['felixd_rss_loaded_mib']} MiB with "
          f"{args.routes} routes, peak {result['felixd_rss_peak_mib']} MiB")
    print(f"  single change (feed frame -> kernel), {args.samples} samples: p50 {result['single_change_p50_ms']:.2f} "
          f"ms, p99 {result['single_change_p99_ms']:.2f} ms, max {result['single_change_max_ms']:.2f} ms, "
          f"{result['single_change_timeouts']} not seen within {args.sample_timeout:.0f} s")
    print(f"  the same change written straight to netlink by the bench: p50 {result['direct_change_p50_ms']:.2f} "
          f"ms, p99 {result['direct_change_p99_ms']:.2f} ms, max {result['direct_change_max_ms']:.2f} ms")
    print(f"  the same change through a minimal relay process: p50 {result['relay_change_p50_ms']:.2f} "
          f"ms, p99 {result['relay_change_p99_ms']:.2f} ms, max {result['relay_change_max_ms']:.2f} ms")
    print(f"  load average: start {result['run']['load_start']}, end {result['run']['load_end']}")
    results.merge(Path(args.out), args.label, result)
    print(f"results: {args.out} (key {args.label!r})")


if __name__ == "__main__":
    main()
