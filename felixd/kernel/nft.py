"""natOutgoing as one nftables table, `inet tortie`, and nothing else in the ruleset.

Pools are held in four interval sets; the two masquerade rules never change, so a pool change is a
`flush set` plus `add element` in one `nft -f -` transaction (atomic: no packet sees a half-updated
set). The table is recreated whole only when it is missing or its chain is not the one we wrote.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from felixd.state import NatOutgoing
from proto.record import record

TABLE = "tortie"
FAMILY = "inet"
CHAIN = "postrouting"
SETS = {"nat_pools_v4": "ipv4_addr", "all_pools_v4": "ipv4_addr",
        "nat_pools_v6": "ipv6_addr", "all_pools_v6": "ipv6_addr"}
RULE_COMMENTS = ("tortie-nat-outgoing-v4", "tortie-nat-outgoing-v6")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NftError(RuntimeError):
    pass


def _table_text(nat: NatOutgoing) -> str:
    sets = "\n".join(f"  set {name} {{ type {kind}; flags interval; auto-merge; }}"
                     for name, kind in SETS.items())
    return (f"table {FAMILY} {TABLE} {{\n{sets}\n"
            f"  chain {CHAIN} {{\n"
            f"    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    ip saddr @nat_pools_v4 ip daddr != @all_pools_v4 masquerade comment \"{RULE_COMMENTS[0]}\"\n"
            f"    ip6 saddr @nat_pools_v6 ip6 daddr != @all_pools_v6 masquerade comment \"{RULE_COMMENTS[1]}\"\n"
            f"  }}\n}}\n")


def _wanted_sets(nat: NatOutgoing) -> dict[str, frozenset[Network]]:
    return {"nat_pools_v4": _normalise(nat.nat_pools_v4), "all_pools_v4": _normalise(nat.all_pools_v4),
            "nat_pools_v6": _normalise(nat.nat_pools_v6), "all_pools_v6": _normalise(nat.all_pools_v6)}


def _normalise(cidrs: Iterable[str | Network]) -> frozenset[Network]:
    """As nftables' auto-merge stores them: overlapping and adjacent prefixes collapsed."""
    nets = [ipaddress.ip_network(c) for c in cidrs]
    v4 = [n for n in nets if n.version == 4]
    v6 = [n for n in nets if n.version == 6]
    return frozenset([*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)])  # type: ignore[arg-type]


def _element_networks(elem: Any) -> list[Network]:
    if isinstance(elem, str):
        return [ipaddress.ip_network(elem)]
    if "prefix" in elem:
        return [ipaddress.ip_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}")]
    if "range" in elem:
        lo, hi = (ipaddress.ip_address(a) for a in elem["range"])
        return list(ipaddress.summarize_address_range(lo, hi))  # type: ignore[arg-type]
    if "elem" in elem:
        return _element_networks(elem["elem"]["val"])
    raise NftError(f"unexpected set element {elem!r}")


@record
class TableState:
    sets: dict[str, frozenset[Network]]
    chain_ok: bool


class NatTable:
    def __init__(self, netns: str | None, nft: str = "nft") -> None:
        self.netns = netns
        self.nft = nft

    async def _run(self, *args: str, input: str | None = None) -> tuple[int, str, str]:
        cmd = [self.nft, *args]
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(input.encode() if input is not None else None)
        return proc.returncode or 0, out.decode(), err.decode()

    async def read(self) -> TableState | None:
        """What the kernel holds of our table, or None when there is none."""
        rc, out, err = await self._run("-j", "list", "table", FAMILY, TABLE)
        if rc != 0:
            if "No such file or directory" in err or "does not exist" in err:
                return None
            raise NftError(f"nft list table failed: {err.strip()}")
        sets: dict[str, frozenset[Network]] = {}
        rules: list[dict[str, Any]] = []
        chain_ok = False
        for item in json.loads(out).get("nftables", []):
            if "set" in item:
                s = item["set"]
                nets: list[Network] = []
                for elem in s.get("elem", []):
                    nets.extend(_element_networks(elem))
                sets[s["name"]] = _normalise(nets)
            elif "chain" in item and item["chain"]["name"] == CHAIN:
                ch = item["chain"]
                chain_ok = ch.get("hook") == "postrouting" and ch.get("type") == "nat"
            elif "rule" in item and item["rule"]["chain"] == CHAIN:
                rules.append(item["rule"])
        comments = tuple(r.get("comment") for r in rules)
        chain_ok = chain_ok and comments == RULE_COMMENTS and set(sets) == set(SETS)
        return TableState(sets, chain_ok)

    async def sync(self, nat: NatOutgoing) -> int:
        """Make the table match `nat`; returns 1 when something was written, else 0."""
        wanted = _wanted_sets(nat)
        have = await self.read()
        if not any(wanted.values()):
            if have is None:
                return 0
            await self._apply(f"delete table {FAMILY} {TABLE}\n")
            return 1
        script: list[str] = []
        if have is None or not have.chain_ok:
            # add-then-delete makes the delete safe when the table is absent; all in one transaction
            script += [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", _table_text(nat)]
            changed = set(SETS)
        else:
            changed = {name for name in SETS if have.sets.get(name, frozenset()) != wanted[name]}
            script += [f"flush set {FAMILY} {TABLE} {name}" for name in sorted(changed)]
        for name in sorted(changed):
            if wanted[name]:
                elems = ", ".join(str(n) for n in sorted(wanted[name], key=lambda n: (n.version, n)))
                script.append(f"add element {FAMILY} {TABLE} {name} {{ {elems} }}")
        if not changed:
            return 0
        await self._apply("\n".join(script) + "\n")
        return 1

    async def _apply(self, script: str) -> None:
        rc, _out, err = await self._run("-f", "-", input=script)
        if rc != 0:
            raise NftError(f"nft -f failed: {err.strip()}\n{script}")

    async def delete(self) -> None:
        if await self.read() is not None:
            await self._apply(f"delete table {FAMILY} {TABLE}\n")
