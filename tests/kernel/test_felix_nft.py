"""The nftables table `tortie`: in-place set updates, idempotence, and nothing else in the ruleset touched."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from felixd.kernel.nft import NatTable
from felixd.state import NatOutgoing
from lab.netns import Netns, NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.felix_support import PREFIX

FOREIGN_RULESET = """
table ip filter {
  chain forward { type filter hook forward priority 0; policy accept; ip saddr 10.244.0.0/16 counter; }
}
table inet tortie_other {
  set s { type ipv4_addr; elements = { 10.1.1.1 }; }
}
"""


@pytest.fixture
def ns() -> Iterator[Netns]:
    require_root()
    require_tools("ip", "nft")
    with NetnsSet(prefix=PREFIX) as s:
        yield s.add("nft")


def foreign(ns: Netns) -> list[object]:
    data = json.loads(ns.exec("nft", "-j", "list", "ruleset").stdout)["nftables"]
    # everything but our table, minus handles (nft renumbers nothing of others, but be strict on content)
    return [item for item in data if "metainfo" not in item
            and next(iter(item.values())).get("table", next(iter(item.values())).get("name")) != "tortie"]


async def test_sets_updated_in_place_and_foreign_tables_untouched(ns: Netns) -> None:
    ns.exec("nft", "-f", "-", input=FOREIGN_RULESET)
    before = foreign(ns)
    assert len(before) >= 4  # two tables, a chain with its rule, a set: the comparison has teeth
    table = NatTable(ns.name)
    nat = NatOutgoing(
        # adjacent halves: nft's auto-merge stores one interval, which must still compare equal
        nat_pools_v4=frozenset({"10.244.0.0/17", "10.244.128.0/17"}),
        all_pools_v4=frozenset({"10.244.0.0/16", "10.245.0.0/16"}),
        nat_pools_v6=frozenset({"fd00:244::/48"}),
        all_pools_v6=frozenset({"fd00:244::/48", "fd00:245::/48"}))
    assert await table.sync(nat) == 1
    assert await table.sync(nat) == 0  # a restart over the same kernel writes nothing
    state = await table.read()
    assert state is not None and state.chain_ok
    assert {str(n) for n in state.sets["nat_pools_v4"]} == {"10.244.0.0/16"}
    assert {str(n) for n in state.sets["all_pools_v6"]} == {"fd00:244::/48", "fd00:245::/48"}
    handle_before = ns.exec("nft", "-a", "list", "chain", "inet", "tortie", "postrouting").stdout

    smaller = NatOutgoing(nat_pools_v4=frozenset({"10.245.0.0/16"}), all_pools_v4=nat.all_pools_v4)
    assert await table.sync(smaller) == 1
    # the rules (and their handles) stay: only set contents changed
    assert ns.exec("nft", "-a", "list", "chain", "inet", "tortie", "postrouting").stdout == handle_before
    listing = ns.exec("nft", "list", "set", "inet", "tortie", "nat_pools_v4").stdout
    assert "10.245.0.0/16" in listing and "10.244." not in listing
    assert foreign(ns) == before

    # someone breaks our chain: the table is rebuilt whole
    ns.exec("nft", "flush", "chain", "inet", "tortie", "postrouting")
    assert await table.sync(smaller) == 1
    assert "masquerade" in ns.exec("nft", "list", "chain", "inet", "tortie", "postrouting").stdout

    assert await table.sync(NatOutgoing()) == 1  # no pools: the table goes
    assert "tortie " not in ns.exec("nft", "list", "tables").stdout + " "
    assert await table.sync(NatOutgoing()) == 0
    assert foreign(ns) == before
