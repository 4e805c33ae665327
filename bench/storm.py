"""What a start storm cost tortie-bgpd speakers, read from their control sockets (bench/scale_mesh.py,
bench/scale_reflector.py)."""

from __future__ import annotations

from runtime.control import ControlError, call


def storm(socks: list[str]) -> dict[str, int]:
    """What the start storm cost the tortie-bgpd speakers (issue 12): connection collisions resolved
    (tortie_bgp_connection_collisions_total), and sessions established more than once per peer."""
    collisions = restarts = 0
    for sock in socks:
        try:
            rows = call(sock, "neighbors")
        except (ControlError, OSError):
            continue
        collisions += sum(int(r.get("collisions", 0)) for r in rows)
        restarts += sum(max(0, int(r.get("established_count", 0)) - 1) for r in rows)
    return {"collisions": collisions, "session_restarts": restarts}
