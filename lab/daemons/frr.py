"""The FRR runner."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
from pathlib import Path

from lab.daemons.base import (
    FRR_DIR,
    Daemon,
    DaemonError,
    Route,
    norm_prefix,
    poll,
)

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
        if r.as_path_prepend:
            lines.append(" set as-path prepend " + " ".join(str(a) for a in r.as_path_prepend))
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
            else:
                # FRR retries a refused connection only after 120 s; tortie may not listen yet when FRR starts
                c.append(f" neighbor {n.address} timers connect 5")
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
            if n.ttl_security is not None:
                c.append(f" neighbor {n.address} ttl-security hops {n.ttl_security}")
            if n.bfd is not None:
                c.append(f" neighbor {n.address} bfd")
                c.append(f" neighbor {n.address} bfd profile tortie")
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
        b = next((n.bfd for n in self.neighbors if n.bfd is not None), None)
        if b is not None:
            if b.auth:
                raise DaemonError("FRR 8.4's bfdd has no BFD authentication")
            (self.rundir / "bfdd.conf").write_text("\n".join([
                "frr defaults traditional", f"log file {log}", "bfd", " profile tortie",
                f"  receive-interval {b.min_rx_ms}", f"  transmit-interval {b.min_tx_ms}",
                f"  detect-multiplier {b.multiplier}", " !", "!"]) + "\n")
        for p in self.rundir.iterdir():
            shutil.chown(p, "frr", "frr")

    def _launch(self) -> None:
        common = ["-z", str(self.rundir / "zserv.api"), "--vty_socket", str(self.rundir), "-A", "127.0.0.1"]
        self._spawn(str(FRR_DIR / "zebra"), "-f", str(self.rundir / "zebra.conf"),
                    "-i", str(self.rundir / "zebra.pid"), *common, log_name="zebra.out")
        if not poll(lambda: (self.rundir / "zserv.api").exists(), 10, 0.05):
            raise DaemonError(f"zebra did not create its socket:\n{self._log_tail()}")
        if (self.rundir / "bfdd.conf").exists():
            self._spawn(str(FRR_DIR / "bfdd"), "-f", str(self.rundir / "bfdd.conf"),
                        "-i", str(self.rundir / "bfdd.pid"), *common, log_name="bfdd.out")
        self._spawn(str(FRR_DIR / "bgpd"), "-f", str(self.rundir / "bgpd.conf"),
                    "-i", str(self.rundir / "bgpd.pid"), *common, log_name="bgpd.out")

    def _log_tail(self) -> str:
        parts = []
        for p in (self.workdir / "zebra.out", self.workdir / "bfdd.out", self.workdir / "bgpd.out",
                  self.rundir / "frr.log"):
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
        for out in (self.workdir / "zebra.out", self.workdir / "bfdd.out", self.workdir / "bgpd.out",
                    self.rundir / "frr.log"):
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
                pfx = norm_prefix(key)
                if pfx is not None:
                    have.add(pfx)
        return have

    def diagnostics(self) -> str:
        return (f"=== frr {self.ns.name}: show bgp neighbors\n" + self.vtysh("show bgp neighbors")
                + "\n=== show bgp ipv4 unicast\n" + self.vtysh("show bgp ipv4 unicast")
                + "\n=== show bgp ipv6 unicast\n" + self.vtysh("show bgp ipv6 unicast")
                + ("\n=== show bfd peers\n" + self.vtysh("show bfd peers")
                   if any(n.bfd is not None for n in self.neighbors) else "")
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

    def bfd_state(self, address: str) -> str | None:
        out = self.vtysh("show bfd peers json")
        try:
            peers = json.loads(out)
        except json.JSONDecodeError:
            return None
        want = ipaddress.ip_address(address)
        for p in peers if isinstance(peers, list) else []:
            try:
                if ipaddress.ip_address(p.get("peer", "")) != want:
                    continue
            except ValueError:
                continue
            return {"up": "Up", "down": "Down", "init": "Init", "shutdown": "AdminDown"}.get(
                str(p.get("status")), str(p.get("status")))
        return None

    def refresh_in(self, address: str) -> None:
        out = self.vtysh(f"clear bgp {address} soft in")
        if "%" in out:
            raise DaemonError(f"clear bgp soft in failed: {out}")

