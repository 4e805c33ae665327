"""Real BGP daemons (BIRD 2, BIRD 1.6, GoBGP, FRR), one per network namespace, for interop tests.

Each runner writes its configuration into its own work directory from plain parameters, starts the
daemon inside a `lab.netns.Netns` (control socket, pid and log in that directory), answers "is the
session Established" and "which prefixes are in the RIB" by polling the daemon's own CLI with a
deadline, and stops the daemon by PID. `diagnostics()` returns the CLI views a failing test prints.

Facts behind the configs are in /work/shared/lab/README.md (for example: FRR drops to user `frr`, BIRD 2
needs `protocol direct` for `gateway recursive` on a shared subnet, GoBGP never touches the kernel).

What each daemon cannot do through these runners: BIRD 1.6 carries one address family per process
(`Bird16(ipv6=True)` runs bird6); GoBGP 3.10 sends no ROUTE-REFRESH of its own (`refresh_in` re-runs
its import policy); `Route.next_hop` is ignored by FRR (it announces `network` routes with its own
address); `Neighbor.four_octet_as=False` only works on BIRD; FRR's graceful restart is router-wide.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.netns import Netns, NetnsSet

REPO_ROOT = Path(__file__).resolve().parent.parent
BIRD16_DIR = REPO_ROOT / ".deps" / "bird16" / "usr" / "sbin"
FRR_DIR = Path("/usr/lib/frr")


class DaemonError(RuntimeError):
    pass


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Neighbor:
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

    @property
    def ident(self) -> str:
        """A name usable as a BIRD protocol name or FRR route-map name."""
        return "peer_" + re.sub(r"[^0-9A-Za-z]", "_", self.address)


@dataclass(frozen=True)
class Route:
    prefix: str
    next_hop: str | None = None
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    ext_communities: tuple[tuple[str, int, int], ...] = ()  # ("rt" | "ro", global admin AS, local)
    med: int | None = None
    local_pref: int | None = None

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
                 neighbors: Sequence[Neighbor] = (), routes: Sequence[Route] = (),
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

    def _neighbor(self, address: str) -> Neighbor:
        for n in self.neighbors:
            if ipaddress.ip_address(n.address) == ipaddress.ip_address(address):
                return n
        raise DaemonError(f"no neighbor {address} configured on {self.kind}")


def _norm_prefix(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


# ---------------------------------------------------------------- BIRD (2 and 1.6)


def _bird_attr_statements(route: Route) -> list[str]:
    out: list[str] = []
    for a, b in route.communities:
        out.append(f"bgp_community.add(({a},{b}));")
    for a, b, c in route.large_communities:
        out.append(f"bgp_large_community.add(({a},{b},{c}));")
    for kind, a, b in route.ext_communities:
        out.append(f"bgp_ext_community.add(({kind},{a},{b}));")
    if route.med is not None:
        out.append(f"bgp_med = {route.med};")
    if route.local_pref is not None:
        out.append(f"bgp_local_pref = {route.local_pref};")
    return out


class _Bird(Daemon):

    @property
    def ctl(self) -> Path:
        return self.workdir / "bird.ctl"

    @property
    def conf(self) -> Path:
        return self.workdir / "bird.conf"

    def bird_binary(self) -> str:
        raise NotImplementedError

    def birdc_binary(self) -> str:
        raise NotImplementedError

    def cli_prefix(self) -> list[str]:
        return [self.birdc_binary(), "-s", str(self.ctl)]

    def _launch(self) -> None:
        self._spawn(self.bird_binary(), "-f", "-c", str(self.conf), "-s", str(self.ctl),
                    "-P", str(self.workdir / "bird.pid"), log_name="bird.out")

    def ready(self) -> bool:
        if not self.running:
            raise DaemonError(f"{self.kind} exited:\n{self._log_tail()}")
        return self.ctl.exists() and "BIRD" in self.cli("show", "status")

    def _log_tail(self) -> str:
        parts = []
        for name in ("bird.out", "bird.log"):
            p = self.workdir / name
            if p.exists():
                parts.append(f"--- {name}\n" + p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def established(self, address: str) -> bool:
        n = self._neighbor(address)
        out = self.cli("show", "protocols", n.ident)
        return any(n.ident in line and "Established" in line for line in out.splitlines())

    def rib_prefixes(self) -> set[str]:
        out = self.cli("show", "route", "all", timeout=30)
        have = set()
        for line in out.splitlines():
            if not line or line[0].isspace():
                continue
            pfx = _norm_prefix(line.split()[0])
            if pfx is not None:
                have.add(pfx)
        return have

    def diagnostics(self) -> str:
        return (f"=== {self.kind} {self.ns.name}: show protocols all\n"
                + self.cli("show", "protocols", "all")
                + "\n=== show route all\n" + self.cli("show", "route", "all", timeout=30)
                + "\n" + self._log_tail())

    def reconfigure(self) -> None:
        self.write_config()
        out = self.cli("configure")
        if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
            raise DaemonError(f"{self.kind} reconfigure failed: {out}")

    def add_route(self, route: Route) -> None:
        self.routes = [r for r in self.routes if r.prefix != route.prefix] + [route]
        self.reconfigure()

    def withdraw_route(self, prefix: str) -> None:
        net = ipaddress.ip_network(prefix)
        self.routes = [r for r in self.routes if ipaddress.ip_network(r.prefix) != net]
        self.reconfigure()

    def shutdown_neighbor(self, address: str, message: str = "") -> None:
        n = self._neighbor(address)
        args = ["disable", n.ident] + ([json.dumps(message)] if message else [])
        out = self.cli(*args)
        if "disabled" not in out:
            raise DaemonError(f"birdc disable failed: {out}")

    def enable_neighbor(self, address: str) -> None:
        self.cli("enable", self._neighbor(address).ident)

    def refresh_in(self, address: str) -> None:
        out = self.cli("reload", "in", self._neighbor(address).ident)
        if "reload" not in out.lower():
            raise DaemonError(f"birdc reload in failed: {out}")

    # --- config pieces shared by both versions

    def _export_filter(self, name: str, family: str | None) -> str:
        """Static routes get their attributes on export, so BIRD 1.6 and 2 share one mechanism."""
        lines = [f"filter {name} {{"]
        for r in self.routes:
            if family is not None and r.family != family:
                continue
            stmts = _bird_attr_statements(r)
            if stmts:
                lines.append(f"  if net = {r.prefix} then {{ {' '.join(stmts)} }}")
        lines.append("  if source = RTS_STATIC then accept;")
        lines.append("  if source = RTS_BGP then accept;")
        lines.append("  reject;")
        lines.append("}")
        return "\n".join(lines)

    @staticmethod
    def _static_line(r: Route) -> str:
        if r.next_hop:
            return f"  route {r.prefix} via {r.next_hop};"
        return f"  route {r.prefix} blackhole;"

    def _bgp_common(self, n: Neighbor) -> list[str]:
        lines = []
        local = f" {n.local_address}" if n.local_address else ""
        lines.append(f"  local{local} as {self.asn};")
        lines.append(f"  neighbor {n.address} as {n.asn};")
        if n.passive:
            lines.append("  passive on;")
        if n.password:
            lines.append(f"  password {json.dumps(n.password)};")
        if n.graceful_restart:
            lines.append("  graceful restart on;")
            lines.append(f"  graceful restart time {n.restart_time};")
        if n.rr_client:
            lines.append("  rr client;")
            if self.cluster_id:
                lines.append(f"  rr cluster id {self.cluster_id};")
        if n.hold_time is not None:
            lines.append(f"  hold time {n.hold_time};")
        if n.multihop:
            lines.append("  multihop;")
        if not n.four_octet_as:
            lines.append("  enable as4 off;")
        return lines


_ADD_PATH_BIRD = {"rx": "rx", "tx": "tx", "both": "on"}


class Bird2(_Bird):
    kind = "bird2"
    binaries = ("bird", "birdc")

    def __init__(self, *args: object, strict_bind: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # BIRD listens on the wildcard address unless told otherwise; `strict bind` listens on each
        # session's local_address only, so another speaker can own port 179 on the namespace's other address
        self.strict_bind = strict_bind

    def bird_binary(self) -> str:
        return shutil.which("bird") or "bird"

    def birdc_binary(self) -> str:
        return shutil.which("birdc") or "birdc"

    def write_config(self) -> None:
        c: list[str] = [
            f"router id {self.router_id};",
            f'log "{self.workdir / "bird.log"}" all;',
            "protocol device { scan time 10; }",
            "protocol direct { ipv4; ipv6; }",
        ]
        for fam in ("ipv4", "ipv6"):
            c.append(self._export_filter(f"export_{fam}", fam))
            routes = [r for r in self.routes if r.family == fam]
            c.append(f"protocol static static_{fam} {{")
            c.append(f"  {fam};")
            c.extend(self._static_line(r) for r in routes)
            c.append("}")
        for n in self.neighbors:
            c.append(f"protocol bgp {n.ident} {{")
            c.extend(self._bgp_common(n))
            if self.strict_bind and n.local_address:
                c.append("  strict bind on;")
            for fam in n.families:
                c.append(f"  {fam} {{")
                c.append("    import all;")
                c.append(f"    export filter export_{fam};")
                if n.add_path:
                    c.append(f"    add paths {_ADD_PATH_BIRD[n.add_path]};")
                if n.next_hop_self:
                    c.append("    next hop self;")
                if n.asn == self.asn and not n.multihop:
                    # iBGP on a shared subnet: resolve next hops through `protocol direct`
                    c.append("    gateway recursive;")
                if fam == "ipv4" and n.extended_next_hop:
                    c.append("    extended next hop on;")
                c.append("  };")
            c.append("}")
        self.conf.write_text("\n".join(c) + "\n")


class Bird16(_Bird):
    """BIRD 1.6.8 (Calico's line) from the extraction under .deps; `ipv6=True` runs bird6."""

    kind = "bird16"
    binaries = (str(BIRD16_DIR / "bird"), str(BIRD16_DIR / "birdc"))

    def __init__(self, *args: object, ipv6: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ipv6 = ipv6

    def bird_binary(self) -> str:
        return str(BIRD16_DIR / ("bird6" if self.ipv6 else "bird"))

    def birdc_binary(self) -> str:
        return str(BIRD16_DIR / ("birdc6" if self.ipv6 else "birdc"))

    def write_config(self) -> None:
        fam = "ipv6" if self.ipv6 else "ipv4"
        c: list[str] = [
            f"router id {self.router_id};",
            f'log "{self.workdir / "bird.log"}" all;',
            "protocol device { scan time 10; }",
            'protocol direct { interface "*"; }',
            self._export_filter("export_bgp", fam),
            "protocol static {",
        ]
        c.extend(self._static_line(r) for r in self.routes if r.family == fam)
        c.append("}")
        for n in self.neighbors:
            c.append(f"protocol bgp {n.ident} {{")
            c.extend(self._bgp_common(n))
            c.append("  import all;")
            c.append("  export filter export_bgp;")
            if n.add_path:
                c.append(f"  add paths {_ADD_PATH_BIRD[n.add_path]};")
            if n.next_hop_self:
                c.append("  next hop self;")
            if n.asn == self.asn and not n.multihop:
                c.append("  gateway recursive;")
            c.append("}")
        self.conf.write_text("\n".join(c) + "\n")


# ---------------------------------------------------------------- GoBGP


_GOBGP_FAMILY = {"ipv4": "ipv4-unicast", "ipv6": "ipv6-unicast"}


def _toml_str(s: str) -> str:
    return json.dumps(s)


class GoBgp(Daemon):
    kind = "gobgp"
    binaries = ("gobgpd", "gobgp")
    api = "127.0.0.1:50051"

    def __init__(self, *args: object, listen_addresses: Sequence[str] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # empty: gobgpd listens on every address; given, only on these, leaving port 179 on the
        # namespace's other addresses to another speaker
        self.listen_addresses = list(listen_addresses)

    @property
    def conf(self) -> Path:
        return self.workdir / "gobgpd.toml"

    def cli_prefix(self) -> list[str]:
        host, port = self.api.rsplit(":", 1)
        return ["gobgp", "-u", host, "-p", port]

    def write_config(self) -> None:
        c: list[str] = [
            "[global.config]",
            f"  as = {self.asn}",
            f"  router-id = {_toml_str(self.router_id)}",
        ]
        if self.listen_addresses:
            c.append("  local-address-list = [" + ", ".join(_toml_str(a) for a in self.listen_addresses) + "]")
        nhs = [n for n in self.neighbors if n.next_hop_self]
        if nhs:
            # GoBGP has no per-neighbor next-hop-self: a global export policy keyed on a neighbor set
            c += ["[global.apply-policy.config]", '  export-policy-list = ["next-hop-self"]',
                  '  default-export-policy = "accept-route"']
        for n in self.neighbors:
            c += ["[[neighbors]]", "  [neighbors.config]",
                  f"    neighbor-address = {_toml_str(n.address)}", f"    peer-as = {n.asn}"]
            if n.password:
                c.append(f"    auth-password = {_toml_str(n.password)}")
            if n.hold_time is not None:
                c += ["  [neighbors.timers.config]", f"    hold-time = {n.hold_time}",
                      f"    keepalive-interval = {max(1, n.hold_time // 3)}"]
            c.append("  [neighbors.transport.config]")
            c.append(f"    passive-mode = {'true' if n.passive else 'false'}")
            if n.local_address:
                c.append(f"    local-address = {_toml_str(n.local_address)}")
            if n.multihop:
                c += ["  [neighbors.ebgp-multihop.config]", "    enabled = true", "    multihop-ttl = 64"]
            if n.graceful_restart:
                c += ["  [neighbors.graceful-restart.config]", "    enabled = true",
                      f"    restart-time = {n.restart_time}"]
            if n.rr_client:
                c += ["  [neighbors.route-reflector.config]", "    route-reflector-client = true",
                      f"    route-reflector-cluster-id = {_toml_str(self.cluster_id or self.router_id)}"]
            for fam in n.families:
                c += ["  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                      f"      afi-safi-name = {_toml_str(_GOBGP_FAMILY[fam])}"]
                if n.graceful_restart:
                    c += ["    [neighbors.afi-safis.mp-graceful-restart.config]", "      enabled = true"]
                if n.add_path:
                    c.append("    [neighbors.afi-safis.add-paths.config]")
                    if n.add_path in ("rx", "both"):
                        c.append("      receive = true")
                    if n.add_path in ("tx", "both"):
                        c.append("      send-max = 8")
        if nhs:
            c += ["[[defined-sets.neighbor-sets]]", '  neighbor-set-name = "nhs"',
                  "  neighbor-info-list = [" + ", ".join(_toml_str(n.address) for n in nhs) + "]",
                  "[[policy-definitions]]", '  name = "next-hop-self"',
                  "  [[policy-definitions.statements]]", '    name = "nhs"',
                  "    [policy-definitions.statements.conditions.match-neighbor-set]",
                  '      neighbor-set = "nhs"', '      match-set-options = "any"',
                  "    [policy-definitions.statements.actions]",
                  '      route-disposition = "accept-route"',
                  "    [policy-definitions.statements.actions.bgp-actions]",
                  '      set-next-hop = "self"']
        self.conf.write_text("\n".join(c) + "\n")

    def _launch(self) -> None:
        self._spawn("gobgpd", "-f", str(self.conf), "-p", "-l", "info", "--api-hosts", self.api,
                    "--pprof-disable", log_name="gobgpd.log")

    def ready(self) -> bool:
        if not self.running:
            raise DaemonError(f"gobgpd exited:\n{self._log_tail()}")
        out = self.cli("global")
        if "AS:" not in out:
            return False
        for r in self.routes:
            self.add_route(r, remember=False)
        return True

    def _log_tail(self) -> str:
        p = self.workdir / "gobgpd.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    def established(self, address: str) -> bool:
        out = self.cli("neighbor", address, "-j")
        try:
            state = json.loads(out).get("state", {})
        except (json.JSONDecodeError, AttributeError):
            return False
        # GoBGP 3 reports the FSM state as an enum number (6) or its name, depending on version
        return state.get("session_state") in (6, "ESTABLISHED", "established")

    def rib_prefixes(self) -> set[str]:
        have: set[str] = set()
        for fam in ("ipv4", "ipv6"):
            out = self.cli("global", "rib", "-a", fam, "-j", timeout=30)
            try:
                table = json.loads(out) if out.strip() else {}
            except json.JSONDecodeError:
                continue
            for key in table:
                pfx = _norm_prefix(key)
                if pfx is not None:
                    have.add(pfx)
        return have

    def diagnostics(self) -> str:
        parts = [f"=== gobgp {self.ns.name}: neighbor\n" + self.cli("neighbor")]
        for n in self.neighbors:
            parts.append(f"=== neighbor {n.address}\n" + self.cli("neighbor", n.address))
        for fam in ("ipv4", "ipv6"):
            parts.append(f"=== global rib -a {fam}\n" + self.cli("global", "rib", "-a", fam))
        parts.append("=== gobgpd.log (tail)\n" + self._log_tail())
        return "\n".join(parts)

    def add_route(self, route: Route, remember: bool = True) -> None:
        args = ["global", "rib", "add", "-a", route.family, route.prefix]
        if route.next_hop:
            args += ["nexthop", route.next_hop]
        if route.communities:
            args += ["community", ",".join(f"{a}:{b}" for a, b in route.communities)]
        if route.large_communities:
            args += ["large-community", ",".join(f"{a}:{b}:{c}" for a, b, c in route.large_communities)]
        if route.med is not None:
            args += ["med", str(route.med)]
        if route.local_pref is not None:
            args += ["local-pref", str(route.local_pref)]
        for kind, a, b in route.ext_communities:
            args += [kind, f"{a}:{b}"]
        self.cli(*args, check=True)
        if remember:
            self.routes = [r for r in self.routes if r.prefix != route.prefix] + [route]

    def withdraw_route(self, prefix: str) -> None:
        fam = "ipv6" if ipaddress.ip_network(prefix).version == 6 else "ipv4"
        self.cli("global", "rib", "del", "-a", fam, prefix, check=True)
        net = ipaddress.ip_network(prefix)
        self.routes = [r for r in self.routes if ipaddress.ip_network(r.prefix) != net]

    def shutdown_neighbor(self, address: str, message: str = "") -> None:
        args = ["neighbor", address, "disable"] + (["--reason", message] if message else [])
        self.cli(*args, check=True)

    def enable_neighbor(self, address: str) -> None:
        self.cli("neighbor", address, "enable", check=True)

    def refresh_in(self, address: str) -> None:
        """GoBGP 3.10 keeps its Adj-RIB-In: this re-runs the import policy and sends no ROUTE-REFRESH."""
        for fam in self._neighbor(address).families:
            self.cli("neighbor", address, "softresetin", "-a", fam, check=True)


# ---------------------------------------------------------------- FRR


class Frr(Daemon):
    """zebra + bgpd, both in the namespace, sharing one run directory (vty sockets, zserv, pids)."""

    kind = "frr"
    binaries = (str(FRR_DIR / "zebra"), str(FRR_DIR / "bgpd"), "vtysh")

    # FRR drops to user `frr`, which cannot reach a work directory under a 0700 temporary directory:
    # its configs, sockets, pids and log live here instead, and `workdir/frr` links to it.
    FRR_BASE = Path("/run/tortie-lab")

    @property
    def rundir(self) -> Path:
        return self.FRR_BASE / f"frr-{self.ns.name}"

    def cli_prefix(self) -> list[str]:
        return ["vtysh", "--vty_socket", str(self.rundir)]

    def vtysh(self, *commands: str, check: bool = False, timeout: float = 10) -> str:
        args: list[str] = []
        for cmd in commands:
            args += ["-c", cmd]
        return self.cli(*args, check=check, timeout=timeout)

    def _route_map(self, r: Route) -> list[str]:
        lines = [f"route-map {r.ident} permit 10"]
        if r.communities:
            lines.append(" set community " + " ".join(f"{a}:{b}" for a, b in r.communities))
        if r.large_communities:
            lines.append(" set large-community " + " ".join(f"{a}:{b}:{c}" for a, b, c in r.large_communities))
        for kind in ("rt", "soo"):
            vals = [f"{a}:{b}" for k, a, b in r.ext_communities if {"ro": "soo"}.get(k, k) == kind]
            if vals:
                lines.append(f" set extcommunity {kind} " + " ".join(vals))
        if r.med is not None:
            lines.append(f" set metric {r.med}")
        if r.local_pref is not None:
            lines.append(f" set local-preference {r.local_pref}")
        lines.append("exit")
        return lines

    def write_config(self) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.rundir, "frr", "frr")
        link = self.workdir / "frr"
        if not link.is_symlink():
            link.symlink_to(self.rundir)
        log = self.rundir / "frr.log"
        zebra = ["frr defaults traditional", "hostname zebra", f"log file {log}",
                 "ip nht resolve-via-default", "ipv6 nht resolve-via-default"]
        (self.rundir / "zebra.conf").write_text("\n".join(zebra) + "\n")
        host = "frr-" + self.router_id.replace(".", "-")  # travels in the FQDN capability: keep it stable
        c = ["frr defaults traditional", f"hostname {host}", f"log file {log}"]
        for r in self.routes:
            c += self._route_map(r)
        c += [f"router bgp {self.asn}", f" bgp router-id {self.router_id}",
              " no bgp ebgp-requires-policy", " no bgp network import-check",
              " no bgp default ipv4-unicast"]
        if self.cluster_id:
            c.append(f" bgp cluster-id {self.cluster_id}")
        gr = [n.restart_time for n in self.neighbors if n.graceful_restart]
        if gr:
            # FRR sets graceful restart for the whole router, not per neighbor
            c.append(" bgp graceful-restart")
            c.append(f" bgp graceful-restart restart-time {max(gr)}")
        for n in self.neighbors:
            c.append(f" neighbor {n.address} remote-as {n.asn}")
            if n.passive:
                c.append(f" neighbor {n.address} passive")
            if n.password:
                c.append(f" neighbor {n.address} password {n.password}")
            if n.local_address:
                c.append(f" neighbor {n.address} update-source {n.local_address}")
            if n.hold_time is not None:
                c.append(f" neighbor {n.address} timers {max(1, n.hold_time // 3)} {n.hold_time}")
            if n.multihop:
                c.append(f" neighbor {n.address} ebgp-multihop")
            if n.extended_next_hop:
                c.append(f" neighbor {n.address} capability extended-nexthop")
        for fam in ("ipv4", "ipv6"):
            c.append(f" address-family {fam} unicast")
            for r in self.routes:
                if r.family == fam:
                    c.append(f"  network {r.prefix} route-map {r.ident}")
            for n in self.neighbors:
                if fam not in n.families:
                    continue
                c.append(f"  neighbor {n.address} activate")
                c.append(f"  neighbor {n.address} send-community all")
                if n.add_path in ("tx", "both"):
                    c.append(f"  neighbor {n.address} addpath-tx-all-paths")
                if n.add_path is None:
                    # FRR offers ADD-PATH receive on every session by default
                    c.append(f"  neighbor {n.address} disable-addpath-rx")
                if n.rr_client:
                    c.append(f"  neighbor {n.address} route-reflector-client")
                if n.next_hop_self:
                    c.append(f"  neighbor {n.address} next-hop-self")
            c.append(" exit-address-family")
        (self.rundir / "bgpd.conf").write_text("\n".join(c) + "\n")
        for p in self.rundir.iterdir():
            shutil.chown(p, "frr", "frr")

    def _launch(self) -> None:
        common = ["-z", str(self.rundir / "zserv.api"), "--vty_socket", str(self.rundir), "-A", "127.0.0.1"]
        self._spawn(str(FRR_DIR / "zebra"), "-f", str(self.rundir / "zebra.conf"),
                    "-i", str(self.rundir / "zebra.pid"), *common, log_name="zebra.out")
        if not poll(lambda: (self.rundir / "zserv.api").exists(), 10, 0.05):
            raise DaemonError(f"zebra did not create its socket:\n{self._log_tail()}")
        self._spawn(str(FRR_DIR / "bgpd"), "-f", str(self.rundir / "bgpd.conf"),
                    "-i", str(self.rundir / "bgpd.pid"), *common, log_name="bgpd.out")

    def _log_tail(self) -> str:
        parts = []
        for p in (self.workdir / "zebra.out", self.workdir / "bgpd.out", self.rundir / "frr.log"):
            if p.exists():
                parts.append(f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        super().stop()
        # keep the log beside the other outputs, then drop the directory under /run
        log = self.rundir / "frr.log"
        if log.exists():
            shutil.copy(log, self.workdir / "frr.log")
        shutil.rmtree(self.rundir, ignore_errors=True)
        try:
            self.FRR_BASE.rmdir()  # only when no other FRR runner still uses it
        except OSError:
            pass
        link = self.workdir / "frr"
        if link.is_symlink():
            link.unlink()

    def ready(self) -> bool:
        if not self.running:
            raise DaemonError(f"FRR exited:\n{self._log_tail()}")
        # FRR skips config lines it cannot parse and runs on: refuse to run with a partial config
        for out in (self.workdir / "zebra.out", self.workdir / "bgpd.out", self.rundir / "frr.log"):
            text = out.read_text(errors="replace") if out.exists() else ""
            bad = [line for line in text.splitlines() if re.search(r"on config line \d+", line)]
            if bad:
                raise DaemonError("FRR rejected config lines:\n" + "\n".join(bad))
        return (self.rundir / "bgpd.vty").exists() and "router bgp" in self.vtysh("show running-config")

    def established(self, address: str) -> bool:
        out = self.vtysh(f"show bgp neighbors {address} json")
        try:
            info = json.loads(out)
        except json.JSONDecodeError:
            return False
        peer = next(iter(info.values()), {}) if isinstance(info, dict) else {}
        return isinstance(peer, dict) and peer.get("bgpState") == "Established"

    def rib_prefixes(self) -> set[str]:
        have: set[str] = set()
        for fam in ("ipv4", "ipv6"):
            out = self.vtysh(f"show bgp {fam} unicast json", timeout=30)
            try:
                routes = json.loads(out).get("routes", {})
            except (json.JSONDecodeError, AttributeError):
                continue
            for key in routes:
                pfx = _norm_prefix(key)
                if pfx is not None:
                    have.add(pfx)
        return have

    def diagnostics(self) -> str:
        return (f"=== frr {self.ns.name}: show bgp neighbors\n" + self.vtysh("show bgp neighbors")
                + "\n=== show bgp ipv4 unicast\n" + self.vtysh("show bgp ipv4 unicast")
                + "\n=== show bgp ipv6 unicast\n" + self.vtysh("show bgp ipv6 unicast")
                + "\n" + self._log_tail())

    def configure(self, *lines: str) -> None:
        out = self.vtysh("configure terminal", *lines)
        if "%" in out:
            raise DaemonError(f"vtysh configure {lines} failed: {out}")

    def add_route(self, route: Route) -> None:
        self.configure(*self._route_map(route), f"router bgp {self.asn}",
                        f"address-family {route.family} unicast",
                        f"network {route.prefix} route-map {route.ident}")
        self.routes = [r for r in self.routes if r.prefix != route.prefix] + [route]

    def withdraw_route(self, prefix: str) -> None:
        net = ipaddress.ip_network(prefix)
        fam = "ipv6" if net.version == 6 else "ipv4"
        self.configure(f"router bgp {self.asn}", f"address-family {fam} unicast", f"no network {net}")
        self.routes = [r for r in self.routes if ipaddress.ip_network(r.prefix) != net]

    def shutdown_neighbor(self, address: str, message: str = "") -> None:
        suffix = f" message {message}" if message else ""
        self.configure(f"router bgp {self.asn}", f"neighbor {address} shutdown{suffix}")

    def enable_neighbor(self, address: str) -> None:
        self.configure(f"router bgp {self.asn}", f"no neighbor {address} shutdown")

    def refresh_in(self, address: str) -> None:
        out = self.vtysh(f"clear bgp {address} soft in")
        if "%" in out:
            raise DaemonError(f"clear bgp soft in failed: {out}")


RUNNERS: dict[str, type[Daemon]] = {"bird2": Bird2, "bird16": Bird16, "gobgp": GoBgp, "frr": Frr}
