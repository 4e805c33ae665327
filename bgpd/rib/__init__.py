"""RIBs and the decision process: Adj-RIB-In per peer, Loc-RIB per family, Adj-RIB-Out per peer.

How the daemon wires them (all pure code; time is passed in):

    rib = Rib(speaker, pools)                              # bgpd.rib.rib
    rib.originate(family, own_blocks)                      # this node's exported blocks
    rib.add_peer(peer_info, ImportOptions(...))            # once per configured peer
    # session Established:
    rib.set_add_path(peer_info, negotiated.add_path_receive)
    out = AdjRibOut(peer_info, ExportPolicy(speaker, pools)); out.start(now, rib.loc, families, negotiated)
    # each UPDATE:
    result = rib.receive_update(peer_info, update)         # .changes per family, .end_of_rib, .error (Cease/1)
    for family, changes in result.changes.items():         # to the feed and every started Adj-RIB-Out
        for o in outs: o.changes(family, changes, now)
    # timers: send o.flush(now) when now >= o.next_deadline()
    # route refresh received: o.route_refresh(family, now); BoRR/EoRR received: rib.begin_refresh / end_refresh
    # session down: o.stop(); GracefulHelper.peer_down(...) (or rib.flush_peer without graceful restart)

Best paths are `Path` objects (bgpd.rib.path): `source` (PeerInfo: node, address), `attrs`,
`next_hop`, `stale`, `local_pref`, `as_path_len`: what the feed needs. `LocRib.explain(prefix)` gives
the winner, the reason and every candidate, for `tortiectl bgp rib`.
"""
