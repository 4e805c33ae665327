"""Prefixes against IPPools: is a prefix (a `proto.prefix` value) inside one of the pools, and no
shorter than it? Import policy drops what is not (unless the peer opts in to routes outside the pools);
export policy sends learned routes to eBGP only inside the pools with BGP export on."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from proto.bgp.constants import AFI, IPV4_UNICAST, IPV6_UNICAST, AfiSafi

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _family_of(network: Network) -> AfiSafi:
    return IPV4_UNICAST if network.version == 4 else IPV6_UNICAST


class PoolSet:
    """Fast "is this prefix (a `proto.prefix` value) inside one of the pools, and no shorter?" for
    one family."""

    def __init__(self, networks: Iterable[Network | str], family: AfiSafi) -> None:
        self.family = family
        self.max_len = 32 if family[0] == AFI.IPV4 else 128
        self.networks: list[Network] = []
        # (pool length, whole octets, mask of the partly used octet, its masked value)
        self._tests: list[tuple[int, bytes, int, int]] = []
        for n in networks:
            net = ipaddress.ip_network(n) if isinstance(n, str) else n
            if _family_of(net) != family:
                continue
            self.networks.append(net)
            plen = net.prefixlen
            raw = net.network_address.packed
            whole, bits = divmod(plen, 8)
            mask = (0xFF << (8 - bits)) & 0xFF if bits else 0
            last = raw[whole] & mask if bits else 0
            self._tests.append((plen, raw[:whole], mask, last))

    def select(self, prefixes: Sequence[bytes], offset: int = 0) -> list[bytes]:
        """The prefixes `covers` accepts; `offset` skips an ADD-PATH identifier. One pool on an
        octet boundary (the usual case) is tested inline, without a call per prefix."""
        if offset == 0 and len(self._tests) == 1 and not self._tests[0][2]:
            plen, head, _mask, _last = self._tests[0]
            n = len(head)
            if n == 0:
                return [p for p in prefixes if plen <= p[1]]
            return [p for p in prefixes if plen <= p[1] and p[2 : 2 + n] == head]
        covers = self.covers
        if offset:
            return [p for p in prefixes if covers(p[offset:])]
        return [p for p in prefixes if covers(p)]

    def covers(self, prefix: bytes) -> bool:
        length = prefix[1]
        for plen, head, mask, last in self._tests:
            if length < plen:
                continue
            n = len(head)
            if prefix[2 : 2 + n] != head:
                continue
            if mask and (prefix[2 + n] & mask) != last:
                continue
            return True
        return False
