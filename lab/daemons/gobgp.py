"""The GoBGP runner."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path

from lab.daemons.base import (
    Daemon,
    DaemonError,
    Route,
    norm_prefix,
)

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
                pfx = norm_prefix(key)
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

    def bfd_state(self, address: str) -> str | None:
        return None  # GoBGP 3.10 has no BFD

    def refresh_in(self, address: str) -> None:
        """GoBGP 3.10 keeps its Adj-RIB-In: this re-runs the import policy and sends no ROUTE-REFRESH."""
        for fam in self._neighbor(address).families:
            self.cli("neighbor", address, "softresetin", "-a", fam, check=True)


