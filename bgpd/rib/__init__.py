"""RIBs and the decision process: Adj-RIB-In per peer, Loc-RIB per family. The Adj-RIB-Out is shared
by the peers of an update group (`bgpd.update_group`).

How the speaker (`bgpd.speaker`) uses them (all pure code; time is passed in):

    rib = Rib(identity, pools)                             # bgpd.rib.rib
    rib.originate(family, own_blocks)                      # this node's exported blocks
    rib.add_peer(peer_info, ImportOptions(...))            # once per configured peer
    # session Established:
    rib.set_add_path(peer_info, negotiated.add_path_receive)
    # each UPDATE:
    result = rib.receive_update(peer_info, update)         # .changes per family, .end_of_rib, .error (Cease/1)
    # the changes go to every update group once and to the feed's readers
    # route refresh received: group.refresh(...); BoRR/EoRR received: rib.begin_refresh / end_refresh
    # session down: GracefulHelper.peer_down(...) (or rib.flush_peer without graceful restart)

Best paths are `Path` objects (bgpd.rib.path): `source` (PeerInfo: node, address), `attrs`,
`next_hop`, `stale`, `local_pref`, `as_path_len`: what the feed needs. `LocRib.explain(prefix)` gives
the winner, the reason and every candidate, for `tortiectl bgp rib`.
"""
