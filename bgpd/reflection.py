"""Route reflection (RFC 4456): who gets an iBGP-learned route, and what the reflector adds to it.

A node is a reflector when it has a cluster id (Calico: `spec.bgp.routeReflectorClusterID`). Its
clients are the peers marked `rr_client`; every other iBGP peer is a non-client. A route from a client
goes to clients and non-clients, a route from a non-client to clients only, and never back to the
peer it came from or to the router that originated it. Node-to-node mesh peers never get an
iBGP-learned route, reflector or not (Calico keeps reflectors out of the mesh). NEXT_HOP is never
touched; ORIGINATOR_ID is set when missing and the cluster id is prepended to CLUSTER_LIST.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from bgpd.rib.path import PeerInfo
from proto.bgp.model import PathAttributes


class ReflectionTarget(Protocol):
    mesh: bool
    rr_client: bool


def reflects(source: PeerInfo, target: ReflectionTarget, cluster_id: str | None) -> bool:
    """May a route learned from iBGP peer `source` be advertised to iBGP peers like `target`? Never
    back to `source` or to its originator: that is decided per peer (`ExportPolicy.advert`) or per
    update group member (`bgpd.update_group`)."""
    if cluster_id is None or target.mesh:
        return False
    if source.rr_client:
        return True
    return target.rr_client


def reflected_attributes(attrs: PathAttributes, source: PeerInfo, cluster_id: str) -> PathAttributes:
    """RFC 4456 section 8: ORIGINATOR_ID = the originating peer's router id when missing; cluster id
    prepended to CLUSTER_LIST. Everything else, NEXT_HOP included, stays."""
    return replace(
        attrs,
        originator_id=attrs.originator_id or source.router_id,
        cluster_list=(cluster_id, *(attrs.cluster_list or ())),
    )


def reflection_loop(attrs: PathAttributes, router_id: str, cluster_id: str | None) -> str | None:
    """Why a received route must be ignored because reflection brought it back to us, or None."""
    if attrs.originator_id is not None and attrs.originator_id == router_id:
        return "originator-id-is-ours"
    if cluster_id is not None and attrs.cluster_list and cluster_id in attrs.cluster_list:
        return "cluster-list-loop"
    return None
