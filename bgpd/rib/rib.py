"""The RIB as the session layer uses it: UPDATEs in, best-path changes out.

`Rib` holds one Loc-RIB per family, the Adj-RIB-Ins of every peer (plus this node's own routes as the
`local` source) and each peer's import policy. `receive_update` applies one decoded UPDATE: attribute
checks once per attribute set, the pool filter per prefix, Adj-RIB-In changes, the decision for the
touched prefixes only, and the max-prefixes check. It returns the Loc-RIB changes per family, which the
daemon passes to the feed and the Adj-RIB-Outs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import field

from bgpd.export_policy import originated_attributes
from bgpd.identity import Identity
from bgpd.import_policy import ImportOptions, ImportPolicy
from bgpd.ownership import BlockOwners, Refusal
from bgpd.pool_set import PoolSet
from bgpd.rib.adj_rib_in import AdjRibIn
from bgpd.rib.decision import DEFAULT_DECISION, DecisionConfig
from bgpd.rib.loc_rib import Change, LocRib
from bgpd.rib.path import NextHop, PeerInfo, effective_next_hop
from proto import prefix as pf
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, AfiSafi
from proto.bgp.model import MessageError, PathAttributes, Update
from proto.record import record

log = logging.getLogger("tortie.bgp")

Changes = dict[AfiSafi, list[Change]]
LOGGED_REFUSALS = 10_000  # per peer: each refused (peer, prefix) is logged once, up to this many


@record
class UpdateResult:
    changes: Changes = field(default_factory=dict)
    end_of_rib: AfiSafi | None = None
    error: MessageError | None = None  # Cease/1 when the peer went over its prefix limit


@record
class PeerRibs:
    peer: PeerInfo
    policy: ImportPolicy
    ins: dict[AfiSafi, AdjRibIn]
    # routes block ownership refused (bgpd.ownership), by family and NLRI: shown, and checked again
    # when the affinities change
    refused: dict[AfiSafi, dict[bytes, Refusal]] = field(default_factory=dict)
    logged: set[bytes] = field(default_factory=set)


def _add(changes: Changes, family: AfiSafi, new: list[Change]) -> None:
    if new:
        changes.setdefault(family, []).extend(new)


class Rib:
    def __init__(
        self,
        identity: Identity,
        pools: dict[AfiSafi, PoolSet] | None = None,
        config: DecisionConfig = DEFAULT_DECISION,
        families: Sequence[AfiSafi] = (IPV4_UNICAST, IPV6_UNICAST),
        node: str | None = None,
    ) -> None:
        self.identity = identity
        self.pools = pools or {}
        self.families = tuple(families)
        self.loc = {f: LocRib(f, config) for f in self.families}
        self.local = PeerInfo.local_source(identity.asn, identity.router_id, node)
        self.local_in = {f: AdjRibIn(self.local, f) for f in self.families}
        for f, rib_in in self.local_in.items():
            self.loc[f].add_source(rib_in)
        self.peers: dict[PeerInfo, PeerRibs] = {}
        self.owners: BlockOwners | None = None  # block ownership (None: off, or not configured)

    # ---------------------------------------------------------------- peers

    def add_peer(self, peer: PeerInfo, options: ImportOptions | None = None) -> PeerRibs:
        if peer in self.peers:
            raise ValueError(f"peer {peer.name} already in the RIB")
        policy = ImportPolicy(self.identity, peer, self.pools, options or ImportOptions())
        ins = {f: AdjRibIn(peer, f) for f in self.families}
        for f, rib_in in ins.items():
            self.loc[f].add_source(rib_in)
        state = self.peers[peer] = PeerRibs(peer, policy, ins)
        return state

    def set_add_path(self, peer: PeerInfo, families: Iterable[AfiSafi]) -> None:
        """Whether received NLRI carry path identifiers, per the session just negotiated. Keys are
        plain prefixes either way, so a stale table kept from the previous session stays usable."""
        on = set(families)
        for f, rib_in in self.peers[peer].ins.items():
            rib_in.add_path = f in on

    def set_four_octet_as(self, peer: PeerInfo, on: bool) -> None:
        """Whether the session just negotiated 4-octet AS numbers (RFC 6793): without them, received
        AS4_PATH / AS4_AGGREGATOR are folded into the real path."""
        self.peers[peer].policy.set_four_octet_as(on)

    def remove_peer(self, peer: PeerInfo) -> Changes:
        state = self.peers.pop(peer)
        changes: Changes = {}
        for f, rib_in in state.ins.items():
            _add(changes, f, self.loc[f].remove_source(rib_in))
        return changes

    def flush_peer(self, peer: PeerInfo, families: Iterable[AfiSafi] | None = None) -> Changes:
        """Withdraw everything a peer sent (session down without graceful restart)."""
        changes: Changes = {}
        state = self.peers[peer]
        for f, rib_in in state.ins.items():
            if families is None or f in families:
                state.refused.pop(f, None)
                _add(changes, f, self.loc[f].update(rib_in.clear(), rib_in))
        return changes

    def mark_stale(self, peer: PeerInfo, family: AfiSafi) -> list[Change]:
        state = self.peers[peer]
        state.refused.pop(family, None)  # the peer sends its table again
        rib_in = state.ins[family]
        return self.loc[family].update(rib_in.mark_stale(), rib_in)

    def sweep_stale(self, peer: PeerInfo, family: AfiSafi) -> list[Change]:
        rib_in = self.peers[peer].ins[family]
        return self.loc[family].update(rib_in.sweep_stale(), rib_in)

    def begin_refresh(self, peer: PeerInfo, family: AfiSafi) -> list[Change]:
        """BoRR received (RFC 7313 section 4): the peer is about to re-send its table; what it does
        not re-send before EoRR is gone then. The session should bound the wait (RFC 7313 suggests
        a timer) and call `end_refresh` when it runs out."""
        return self.mark_stale(peer, family)

    def end_refresh(self, peer: PeerInfo, family: AfiSafi) -> list[Change]:
        """EoRR received: routes not re-sent since BoRR are withdrawn."""
        return self.sweep_stale(peer, family)

    def adj_rib_in(self, peer: PeerInfo, family: AfiSafi) -> AdjRibIn:
        return self.peers[peer].ins[family]

    # ---------------------------------------------------------------- own routes

    def originate(self, family: AfiSafi, prefixes: Iterable[bytes]) -> list[Change]:
        """Make this node's originated routes exactly `prefixes` (its exported blocks)."""
        rib_in = self.local_in[family]
        return self.loc[family].update(rib_in.sync(prefixes, originated_attributes(), ()), rib_in)

    # ---------------------------------------------------------------- UPDATEs

    def receive_update(self, peer: PeerInfo, update: Update) -> UpdateResult:
        state = self.peers[peer]
        result = UpdateResult()
        eor = update.end_of_rib()
        if eor is not None:
            result.end_of_rib = eor
            return result
        changes = result.changes
        withdraw_all = update.treat_as_withdraw
        if update.withdrawn or (withdraw_all and update.nlri):
            gone = update.withdrawn + update.nlri if withdraw_all else update.withdrawn
            self._withdraw(state, IPV4_UNICAST, gone, changes)
        if update.mp_unreach is not None:
            mu = update.mp_unreach
            self._withdraw(state, (mu.afi, mu.safi), mu.withdrawn, changes)
        if withdraw_all:
            if update.mp_reach is not None:
                mr = update.mp_reach
                self._withdraw(state, (mr.afi, mr.safi), mr.nlri, changes)
            return result
        attrs = update.attributes
        if update.nlri and attrs is not None:
            self._announce(state, IPV4_UNICAST, update.nlri, attrs, effective_next_hop(attrs, None), result)
        if update.mp_reach is not None and attrs is not None:
            mr = update.mp_reach
            family = (mr.afi, mr.safi)
            self._announce(state, family, mr.nlri, attrs, effective_next_hop(attrs, mr.next_hop), result)
        return result

    def _withdraw(self, state: PeerRibs, family: AfiSafi, prefixes: list[bytes], changes: Changes) -> None:
        rib_in = state.ins.get(family)
        if rib_in is None or not prefixes:
            return
        refused = state.refused.get(family)
        if refused:
            for p in prefixes:
                refused.pop(p, None)
        _add(changes, family, self.loc[family].update(rib_in.withdraw(prefixes), rib_in))

    def _announce(
        self,
        state: PeerRibs,
        family: AfiSafi,
        prefixes: list[bytes],
        attrs: PathAttributes,
        next_hop: NextHop,
        result: UpdateResult,
    ) -> None:
        rib_in = state.ins.get(family)
        if rib_in is None:
            state.policy.reject("family-not-configured", len(prefixes))
            return
        policy = state.policy
        checked = policy.check(attrs, next_hop)
        if isinstance(checked, str):
            # a route that fails the checks replaces (withdraws) what the peer sent before for it
            policy.reject(checked, len(prefixes))
            self._withdraw(state, family, prefixes, result.changes)
            rib_in.keep_filtered(prefixes, attrs, next_hop, checked)
            return
        if self.owners is not None and state.peer.node is not None:
            # block ownership before the filters: what it refuses keeps the attributes as received, so
            # judging it again (affinities changed) runs the whole import policy as for a fresh route
            prefixes = list(self._owned(state, family, prefixes, attrs, next_hop, rib_in.add_path, result.changes))
            if not prefixes:
                return
        chain = policy.chain(family)
        groups: list[tuple[PathAttributes, Sequence[bytes]]] = []
        if chain is None:
            accepted = policy.filter(prefixes, family, rib_in.add_path)
            if len(accepted) != len(prefixes):
                kept = set(accepted)
                dropped = [p for p in prefixes if p not in kept]
                self._withdraw(state, family, dropped, result.changes)
                rib_in.keep_filtered(dropped, checked, next_hop, "outside-pools")
            if accepted:
                groups.append((checked, accepted))
        else:
            for outcome, group in policy.by_rules(chain, prefixes, family, rib_in.add_path, checked, next_hop):
                if isinstance(outcome, str):
                    self._withdraw(state, family, group, result.changes)
                    rib_in.keep_filtered(group, checked, next_hop, outcome)
                else:
                    groups.append((outcome, group))
        for stored, group in groups:
            changed = rib_in.announce(group, stored, next_hop)
            _add(result.changes, family, self.loc[family].update(changed, rib_in))
        if groups:
            error = policy.over_limit(family, len(rib_in))
            if error is not None and result.error is None:
                result.error = error

    # ---------------------------------------------------------------- block ownership

    def _owned(self, state: PeerRibs, family: AfiSafi, prefixes: Sequence[bytes], attrs: PathAttributes,
               next_hop: NextHop, add_path: bool, changes: Changes, accepted: bool = False) -> Sequence[bytes]:
        """The prefixes block ownership accepts; the others replace (withdraw) what the peer sent
        before for them, and are kept as refused, counted per reason and logged once."""
        owners = self.owners
        assert owners is not None and state.peer.node is not None
        ok, refused = owners.check(state.peer.node, prefixes, attrs, next_hop, 4 if add_path else 0)
        table = state.refused.get(family)
        if table and ok:
            for p in ok:
                table.pop(p, None)
        if refused:
            gone = [p for p, _r, _d in refused]
            self._withdraw(state, family, gone, changes)
            table = state.refused.setdefault(family, {})
            for p, reason, detail in refused:
                table[p] = Refusal(reason, detail, attrs, next_hop, accepted)
                state.policy.reject(reason, 1)
                self._log_refusal(state, p[4:] if add_path else p, reason, detail)
        return ok

    def _log_refusal(self, state: PeerRibs, prefix: bytes, reason: str, detail: str) -> None:
        if prefix in state.logged:
            return
        if len(state.logged) >= LOGGED_REFUSALS:
            return
        state.logged.add(prefix)
        peer = state.peer
        log.warning("peer %s (node %s): route %s refused by block ownership: %s (%s)%s", peer.name, peer.node,
                    pf.text(prefix), reason, detail,
                    "; further refusals from this peer are counted, not logged"
                    if len(state.logged) == LOGGED_REFUSALS else "")

    def set_owners(self, owners: BlockOwners | None) -> Changes:
        """New block affinities (or ownership switched on or off): every Node peer's routes, held and
        refused, are judged again. Returns the Loc-RIB changes."""
        self.owners = owners
        changes: Changes = {}
        for state in self.peers.values():
            node = state.peer.node
            if node is None:
                continue
            for family, rib_in in state.ins.items():
                offset = 4 if rib_in.add_path else 0
                held = state.refused.pop(family, {})
                if owners is not None:
                    groups: dict[tuple[PathAttributes, NextHop], list[bytes]] = {}
                    for prefix, path in rib_in.iter_paths():
                        if path.stale:
                            continue
                        groups.setdefault((path.attrs, path.next_hop), []).append(path.path_id + prefix)
                    for (attrs, nh), nlris in groups.items():
                        self._owned(state, family, nlris, attrs, nh, bool(offset), changes, accepted=True)
                again: dict[tuple[PathAttributes, NextHop, bool], list[bytes]] = {}
                for nlri, r in held.items():
                    again.setdefault((r.attrs, r.next_hop, r.accepted), []).append(nlri)
                for (attrs, nh, accepted), nlris in again.items():
                    if not accepted:
                        self._announce(state, family, nlris, attrs, nh, UpdateResult(changes))
                    elif owners is None:
                        _add(changes, family, self.loc[family].update(rib_in.announce(nlris, attrs, nh), rib_in))
                    else:
                        # taken from the Adj-RIB-In by an earlier change: its attributes are import
                        # policy's result already, so they go back without running it a second time
                        ok = self._owned(state, family, nlris, attrs, nh, bool(offset), changes, accepted=True)
                        if ok:
                            _add(changes, family, self.loc[family].update(rib_in.announce(list(ok), attrs, nh),
                                                                          rib_in))
        return changes
