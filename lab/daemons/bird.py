"""BIRD 2 and BIRD 1.6 runners."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

from lab.daemons.base import (
    BIRD16_DIR,
    Daemon,
    DaemonError,
    DaemonNeighbor,
    Route,
    norm_prefix,
)

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
    for asn in reversed(route.as_path_prepend):
        out.append(f"bgp_path.prepend({asn});")
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
            pfx = norm_prefix(line.split()[0])
            if pfx is not None:
                have.add(pfx)
        return have

    def diagnostics(self) -> str:
        return (f"=== {self.kind} {self.ns.name}: show protocols all\n"
                + self.cli("show", "protocols", "all")
                + ("\n=== show bfd sessions\n" + self.cli("show", "bfd", "sessions")
                   if any(n.bfd is not None for n in self.neighbors) else "")
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

    def _bgp_common(self, n: DaemonNeighbor) -> list[str]:
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
        if n.ttl_security is not None:
            lines.append("  ttl security on;")
            if n.ttl_security > 1:
                lines.append(f"  multihop {n.ttl_security};")
        if n.bfd is not None:
            # iBGP is multihop to BIRD, and multihop BFD is RFC 5883 on port 4784: a neighbour on the
            # segment is single hop (RFC 5881, port 3784) only when BIRD is told it is direct
            if n.asn == self.asn and not n.multihop:
                lines.append("  direct;")
            lines.append("  bfd on;")
            # BIRD waits `error wait time` (60 s at first) before it restarts a session it took down
            # for an error of its own, a BFD failure included; tests want to see it come back sooner
            lines.append("  error wait time 5, 30;")
        return lines

    def _bfd_protocol(self) -> list[str]:
        """`protocol bfd` for the sessions with `bfd on`: BIRD takes the timers and keys per interface,
        so every BFD neighbour of one runner shares the first one's settings."""
        b = next((n.bfd for n in self.neighbors if n.bfd is not None), None)
        if b is None:
            return []
        c = ["protocol bfd bfd1 {", '  interface "*" {',
             f"    min rx interval {b.min_rx_ms} ms;", f"    min tx interval {b.min_tx_ms} ms;",
             "    idle tx interval 1000 ms;", f"    multiplier {b.multiplier};"]
        if b.auth:
            c.append(f"    authentication {b.auth};")
            c.append(f'    password "{b.password}" {{ id {b.key_id}; }};')
        c += ["  };", "}"]
        return c

    def bfd_state(self, address: str) -> str | None:
        out = self.cli("show", "bfd", "sessions")
        want = ipaddress.ip_address(address)
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 3:
                try:
                    if ipaddress.ip_address(cols[0]) != want:
                        continue
                except ValueError:
                    continue
                # IP address, Interface, State (BIRD 2); BIRD 1.6 has the same columns
                return next((c for c in cols[1:] if c in ("Up", "Down", "Init", "AdminDown")), None)
        return None


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
        c.extend(self._bfd_protocol())
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
        c.extend(self._bfd_protocol())
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


