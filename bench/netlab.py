"""Throwaway namespaces for the benchmarks and the daemons started in them, as users start them.

`BenchLab` owns a `lab.netns.NetnsSet` (unique namespace names under the caller's prefix), a work
directory, and every process it starts; `close()` (called from `finally`, also on Ctrl-C, SIGTERM
and SIGHUP once `cleanup_on_signals()` is in force) kills them by PID and deletes the namespaces.
Daemons run in the foreground inside their namespace: BIRD 2 with `-f`, tortie-bgpd and
tortie-felixd as the venv's console scripts with a cluster file, `--node` and a run directory for
their control sockets.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.birdctl import BirdCtl
from lab.netns import Netns, NetnsSet, have_root, missing_tools, run

BIN = Path(sys.executable).parent
T = TypeVar("T")


class BenchError(RuntimeError):
    pass


def wait(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """The first truthy value of `check()`, polled every `interval`; BenchError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def prefixes(n: int, pool: str, length: int = 26) -> list[str]:
    """N distinct IPv4 prefixes inside `pool`: /length blocks while they suffice, longer ones beyond."""
    net = ipaddress.ip_network(pool)
    while 2 ** (length - net.prefixlen) < n:
        length += 1
    if length > 32:
        raise BenchError(f"{n} prefixes do not fit in {pool}")
    step = 2 ** (32 - length)
    base = int(net.network_address)
    return [f"{ipaddress.IPv4Address(base + i * step)}/{length}" for i in range(n)]


def check_environment(*tools: str) -> None:
    """Exit with a clear message when not root or a needed program is missing."""
    if not have_root():
        raise SystemExit("needs root (network namespaces)")
    missing = missing_tools("ip", *tools)
    for script in ("tortie-bgpd", "tortie-felixd"):
        if not (BIN / script).exists():
            missing.append(str(BIN / script))
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (run scripts/setup.sh, then this with .venv/bin/python)")
    compile_sources()


def compile_sources() -> None:
    """Byte-compile the project before timing daemons that start: an installed tortie (the .deb's
    postinst) starts from bytecode, while a shell with PYTHONDONTWRITEBYTECODE set would otherwise
    make every daemon compile every module again on every start (about 0.2 s of CPU each)."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("bgpd", "felixd", "proto", "datastore", "runtime", "startup", "ctl"):
        if (root / package).is_dir():
            compileall.compile_dir(str(root / package), quiet=1)


def cleanup_on_signals() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every `finally` (and so every close()) runs."""
    def _raise(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGHUP, _raise)


class BenchLab:
    def __init__(self, prefix: str, keep: bool = False) -> None:
        self.nss = NetnsSet(prefix=prefix)
        self.work = Path(tempfile.mkdtemp(prefix=f"tortie-bench-{prefix}-"))
        self.keep = keep
        self.bridge: Netns | None = None
        self._ports = 0
        self._birds: list[BirdCtl] = []

    # ------------------------------------------------------------ namespaces

    def add(self, label: str) -> Netns:
        """A new namespace with IPv6 off (no neighbour discovery chatter on the shared tables)."""
        ns = self.nss.add(label)
        ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        return ns

    def on_bridge(self, hosts: Sequence[tuple[str, str]], static_neighbours: bool = False) -> list[Netns]:
        """One namespace per (label, address/len), each with eth0 on one bridge (in its own namespace).

        With `static_neighbours`, every host gets a fixed MAC and a permanent neighbour entry for every
        other host. The kernel's ARP table is one table for all namespaces, and its dynamic entries
        are capped machine-wide (gc_thresh3, 1,024 here): a mesh of 50 namespaces would need 2,450
        and overflow it, dropping packets in everyone's namespaces. Permanent entries are exempt.
        """
        if self.bridge is None:
            self.bridge = self.add("br")
            self.bridge.ip("link", "add", "br0", "type", "bridge")
            self.bridge.ip("link", "set", "br0", "up")
        made = [self.add(label) for label, _ in hosts]
        lines = []
        macs = []
        for ns in made:
            port = f"p{self._ports}"
            macs.append(mac(self._ports))
            self._ports += 1
            lines += [f"link add {port} type veth peer name eth0 netns {ns.name}",
                      f"link set {port} master br0", f"link set {port} up"]
        batch(self.bridge, lines)
        for i, (ns, (_, address)) in enumerate(zip(made, hosts)):
            cmds = [f"link set eth0 address {macs[i]}", "link set eth0 up", f"addr add {address} dev eth0"]
            if static_neighbours:
                cmds += [f"neigh replace {other.split('/')[0]} lladdr {macs[j]} dev eth0 nud permanent"
                         for j, (_, other) in enumerate(hosts) if j != i]
            batch(ns, cmds)
        return made

    def pair(self, a_label: str, a_addresses: Sequence[str], b_label: str, b_addresses: Sequence[str],
             prefix_len: int) -> tuple[Netns, Netns]:
        """Two namespaces joined by a veth pair, each with many addresses on its eth0 and a permanent
        neighbour entry for each of the other side's (see `on_bridge` on the shared ARP table)."""
        a, b = self.add(a_label), self.add(b_label)
        self.nss.veth(a, "eth0", b, "eth0")
        a_mac, b_mac = mac(self._ports), mac(self._ports + 1)
        self._ports += 2
        for ns, own_mac, mine, theirs, their_mac in ((a, a_mac, a_addresses, b_addresses, b_mac),
                                                      (b, b_mac, b_addresses, a_addresses, a_mac)):
            batch(ns, [f"link set eth0 address {own_mac}", *(f"addr add {x}/{prefix_len} dev eth0" for x in mine),
                       *(f"neigh replace {x} lladdr {their_mac} dev eth0 nud permanent" for x in theirs)])
        return a, b

    def next_port(self) -> int:
        """A fresh interface index of this run (for `mac`)."""
        self._ports += 1
        return self._ports - 1

    # ------------------------------------------------------------ daemons

    def spawn(self, ns: Netns, argv: Sequence[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.work / log_name, "ab") as out:
            return self.nss.spawn(ns, *argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def bird(self, ns: Netns, name: str, conf: str, timeout: float = 300) -> tuple[subprocess.Popen[bytes], BirdCtl]:
        """BIRD 2 in the foreground; returns once its control socket answers."""
        (self.work / f"{name}.conf").write_text(conf)
        ctl = self.work / f"{name}.ctl"
        ctl.unlink(missing_ok=True)
        proc = self.spawn(ns, ["bird", "-f", "-c", str(self.work / f"{name}.conf"), "-s", str(ctl),
                               "-P", str(self.work / f"{name}.pid")], f"{name}.out")

        def connected() -> BirdCtl | None:
            if proc.poll() is not None:
                raise BenchError(f"BIRD {name} exited: {self.log_tail(f'{name}.out')}")
            try:
                # the socket file appears at bind(), before BIRD listens: retry until it answers
                return BirdCtl(ctl) if ctl.exists() else None
            except OSError:
                return None

        try:
            client = wait(connected, timeout, f"BIRD {name} to answer on its control socket", 0.02)
        except BaseException:
            self.stop(proc)
            raise
        self._birds.append(client)
        return proc, client

    def tortie(self, ns: Netns, daemon: str, config: Path, node: str, run_dir: Path,
               *extra: str, log_level: str = os.environ.get("TORTIE_BENCH_LOG", "warning")) -> subprocess.Popen[bytes]:
        """tortie-bgpd or tortie-felixd (`daemon`), the venv's console script, as a user starts it."""
        run_dir.mkdir(parents=True, exist_ok=True)
        argv = [str(BIN / f"tortie-{daemon}"), "--config", str(config), "--node", node, "--run-dir", str(run_dir),
                "--log-level", log_level, *extra]
        return self.spawn(ns, argv, f"{daemon}-{node}.log")

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.work / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
        """SIGTERM one process we started (by PID), SIGKILL when it lingers."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    # ------------------------------------------------------------ teardown

    def close(self) -> None:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            for client in self._birds:
                try:
                    client.close()
                except OSError:
                    pass
            self.nss.close()
            if not self.keep:
                shutil.rmtree(self.work, ignore_errors=True)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def __enter__(self) -> BenchLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mac(index: int) -> str:
    """A locally administered unicast MAC for the index-th interface of a run."""
    return f"02:74:62:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"


def batch(ns: Netns, lines: Sequence[str]) -> None:
    """Many `ip` commands in one process (`ip -n NS -batch -`)."""
    if lines:
        run(["ip", "-n", ns.name, "-batch", "-"], input="\n".join(lines) + "\n", timeout=120)
