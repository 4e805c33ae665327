"""Network namespaces for tests, the lab and benchmarks, driven through iproute2.

Every namespace made here is new, isolated and has no link to the root namespace unless the caller
adds one; `NetnsSet` removes what it created (and kills the processes it started, by PID).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import field

from proto.record import record


class NetnsError(RuntimeError):
    pass


def have_root() -> bool:
    return os.geteuid() == 0


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def run(cmd: Sequence[str], *, check: bool = True, input: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def unique_name(prefix: str) -> str:
    """A short namespace/interface-safe name (interfaces allow 15 characters)."""
    return f"{prefix}{secrets.token_hex(3)}"


@record
class Netns:
    name: str

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "-n", self.name, *args], check=check)

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.name, *cmd], check=check, timeout=timeout, input=input)

    def popen(self, *cmd: str, **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs.setdefault("start_new_session", True)
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)  # type: ignore[call-overload]

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"


@record
class NetnsSet:
    """Owns a group of namespaces and processes; `close()` removes them all."""

    prefix: str = "tt"
    namespaces: list[Netns] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pidfiles: list[str] = field(default_factory=list)

    def add(self, label: str = "") -> Netns:
        ns = Netns(unique_name(f"{self.prefix}{label[:4]}"))
        run(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def veth(self, a: Netns, a_if: str, b: Netns, b_if: str) -> None:
        """A veth pair with one end in each namespace (created inside `a`, so never in the root)."""
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.ip("link", "set", a_if, "up")
        b.ip("link", "set", b_if, "up")

    def spawn(self, ns: Netns, *cmd: str, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = ns.popen(*cmd, **kwargs)
        self.processes.append(proc)
        return proc

    def track_pidfile(self, path: str) -> None:
        self.pidfiles.append(path)

    def close(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        for path in self.pidfiles:
            try:
                with open(path) as f:
                    pid = int(f.read().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                pass
        for ns in reversed(self.namespaces):
            # Anything still running inside is ours: kill it by PID before the namespace goes.
            pids = run(["ip", "netns", "pids", ns.name], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            run(["ip", "netns", "del", ns.name], check=False)
        self.namespaces.clear()
        self.processes.clear()
        self.pidfiles.clear()

    def __enter__(self) -> NetnsSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
