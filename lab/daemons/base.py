"""The daemon runners' shared parts: parameters (DaemonNeighbor, Route), the base class, polling."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lab.netns import Netns, NetnsSet
from proto.record import record

REPO_ROOT = Path(__file__).resolve().parents[2]
BIRD16_DIR = REPO_ROOT / ".deps" / "bird16" / "usr" / "sbin"
FRR_DIR = Path("/usr/lib/frr")


class DaemonError(RuntimeError):
    pass


# ---------------------------------------------------------------- parameters


@record(frozen=True)
class Bfd:
    """BFD on a BGP session (BIRD `protocol bfd` + `bfd on`, FRR bfdd + `neighbor X bfd`)."""

    min_rx_ms: int = 300
    min_tx_ms: int = 300
    multiplier: int = 3
    auth: str | None = None  # "simple", "keyed md5", "keyed sha1", "meticulous keyed md5", ... (BIRD's words)
    key_id: int = 1
    password: str = ""


@record(frozen=True)
class DaemonNeighbor:
    address: str
    asn: int
    passive: bool = False
    password: str | None = None
    add_path: str | None = None  # None, "rx", "tx" or "both"
    graceful_restart: bool = False
    restart_time: int = 120
    rr_client: bool = False
    next_hop_self: bool = False
    local_address: str | None = None
    families: tuple[str, ...] = ("ipv4",)  # "ipv4", "ipv6": unicast families carried on the session
    hold_time: int | None = None
    multihop: bool = False
    extended_next_hop: bool = False  # RFC 8950 IPv4 NLRI with IPv6 next hop (BIRD 2, FRR)
    four_octet_as: bool = True  # False: offer no 4-octet AS capability (BIRD only: `enable as4 off`)
    ttl_security: int | None = None  # GTSM with this many hops (BIRD 2, FRR)
    bfd: Bfd | None = None

    @property
    def ident(self) -> str:
        """A name usable as a BIRD protocol name or FRR route-map name."""
        return "peer_" + re.sub(r"[^0-9A-Za-z]", "_", self.address)


@record(frozen=True)
class Route:
    prefix: str
    next_hop: str | None = None
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    ext_communities: tuple[tuple[str, int, int], ...] = ()  # ("rt" | "ro", global admin AS, local)
    med: int | None = None
    local_pref: int | None = None
    as_path_prepend: tuple[int, ...] = ()  # prepended on export, before the sender's own AS (BIRD, FRR)

    @property
    def family(self) -> str:
        return "ipv6" if ipaddress.ip_network(self.prefix).version == 6 else "ipv4"

    @property
    def ident(self) -> str:
        return "rt_" + re.sub(r"[^0-9A-Za-z]", "_", self.prefix)


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """True as soon as `check()` is; False when the deadline passes first."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        # the daemons expose no event stream we can block on, so pace the CLI polls
        time.sleep(interval)


# ---------------------------------------------------------------- base


class Daemon:
    """One daemon in one namespace. Subclasses write the config and speak the CLI."""

    kind = "daemon"
    binaries: tuple[str, ...] = ()

    def __init__(self, ns: Netns, workdir: str | os.PathLike[str], *, router_id: str, asn: int,
                 neighbors: Sequence[DaemonNeighbor] = (), routes: Sequence[Route] = (),
                 cluster_id: str | None = None, owner: NetnsSet | None = None) -> None:
        self.ns = ns
        self.workdir = Path(workdir)
        self.router_id = router_id
        self.asn = asn
        self.neighbors = list(neighbors)
        self.routes = list(routes)
        self.cluster_id = cluster_id
        self.owner = owner
        self.pids: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    # --- availability

    @classmethod
    def missing(cls) -> list[str]:
        """Binaries this runner needs that are not installed (empty when it can run)."""
        return [b for b in cls.binaries if shutil.which(b) is None and not Path(b).is_file()]

    # --- life cycle

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        try:
            self._launch()
            up = poll(self.ready, timeout)
        except BaseException:
            self.stop()
            raise
        if not up:
            diag = self.diagnostics()
            self.stop()
            raise DaemonError(f"{self.kind} in {self.ns.name} did not come up in {timeout} s\n{diag}")

    def stop(self) -> None:
        """SIGTERM each process by its PID (last started first), SIGKILL when it lingers."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.pids.clear()
        self._procs.clear()

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(proc.poll() is None for proc in self._procs)

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, *cmd: str, log_name: str) -> subprocess.Popen[bytes]:
        """Run `cmd` in the foreground inside the namespace; `ip netns exec` execs it, same PID."""
        log = open(self.workdir / log_name, "ab")  # noqa: SIM115 - the child keeps it
        try:
            proc = self.ns.popen(*cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self._procs.append(proc)
        self.pids.append(proc.pid)
        if self.owner is not None:
            self.owner.processes.append(proc)
        return proc

    def cli(self, *args: str, check: bool = False, timeout: float = 10) -> str:
        proc = self.ns.exec(*self.cli_prefix(), *args, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            raise DaemonError(f"{self.kind} CLI {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout + proc.stderr

    # --- waiting

    def wait_established(self, address: str, timeout: float = 30.0) -> None:
        if not poll(lambda: self.established(address), timeout):
            raise DaemonError(f"{self.kind} in {self.ns.name}: session to {address} not Established "
                              f"after {timeout} s\n{self.diagnostics()}")

    def wait_prefixes(self, prefixes: Iterable[str], timeout: float = 30.0, present: bool = True) -> None:
        """Wait until every prefix is in (present) or absent from (not present) the daemon's RIB."""
        want = {str(ipaddress.ip_network(p)) for p in prefixes}

        def check() -> bool:
            have = self.rib_prefixes()
            return want <= have if present else not (want & have)

        if not poll(check, timeout):
            have = self.rib_prefixes()
            what = sorted(want - have) if present else sorted(want & have)
            raise DaemonError(f"{self.kind} in {self.ns.name}: {'missing' if present else 'still present'} "
                              f"{what} after {timeout} s\n{self.diagnostics()}")

    # --- per daemon

    def cli_prefix(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def _launch(self) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def established(self, address: str) -> bool:
        raise NotImplementedError

    def rib_prefixes(self) -> set[str]:
        raise NotImplementedError

    def diagnostics(self) -> str:
        raise NotImplementedError

    def add_route(self, route: Route) -> None:
        raise NotImplementedError

    def withdraw_route(self, prefix: str) -> None:
        raise NotImplementedError

    def shutdown_neighbor(self, address: str, message: str = "") -> None:
        """Administrative shutdown: Cease/2 with `message` as RFC 9003 shutdown communication."""
        raise NotImplementedError

    def enable_neighbor(self, address: str) -> None:
        raise NotImplementedError

    def refresh_in(self, address: str) -> None:
        """Ask the peer to send its routes again (ROUTE-REFRESH when the peer supports it)."""
        raise NotImplementedError

    def bfd_state(self, address: str) -> str | None:
        """The BFD session's state towards `address` as the daemon shows it ("Up", "Down", "Init",
        "AdminDown"), None when it has none."""
        raise NotImplementedError

    def _neighbor(self, address: str) -> DaemonNeighbor:
        for n in self.neighbors:
            if ipaddress.ip_address(n.address) == ipaddress.ip_address(address):
                return n
        raise DaemonError(f"no neighbor {address} configured on {self.kind}")


def norm_prefix(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None

