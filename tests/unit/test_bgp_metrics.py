"""tortie-bgpd's metrics: per-peer series or the same families summed over peers, peers per state,
nothing left behind by a removed peer, and /metrics switched off by prometheusMetricsEnabled."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

import runtime.http  # noqa: F401  (switches counters' _created series off, as the daemons do)
from bgpd.metrics import BgpMetrics, forget_peer, refresh
from proto.bgp import IPV4_UNICAST
from runtime.http import ManagementServer
from runtime.prom import generate_latest
from tests.unit.speaker_net import Net, established, learned
from tests.unit.test_speaker import mesh_yaml, topology


def samples(m: BgpMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def two_peers(per_peer: bool) -> BgpMetrics:
    m = BgpMetrics(per_peer=per_peer)
    m.set_state("10.0.0.1", "Established")
    m.set_state("10.0.0.2", "Active")
    m.messages_received.labels("10.0.0.1", "update").inc(3)
    m.messages_received.labels("10.0.0.2", "update").inc(4)
    m.prefixes_received.labels("10.0.0.1", "ipv4_unicast").set(10)
    m.prefixes_received.labels("10.0.0.2", "ipv4_unicast").set(5)
    return m


def test_per_peer_series() -> None:
    s = samples(two_peers(True))
    assert s[("tortie_bgp_session_state", (("peer", "10.0.0.1"), ("state", "established")))] == 1
    assert s[("tortie_bgp_messages_received_total", (("peer", "10.0.0.2"), ("type", "update")))] == 4
    assert s[("tortie_bgp_peers", (("state", "established"),))] == 1
    assert s[("tortie_bgp_peers", (("state", "active"),))] == 1
    assert not any(name.endswith("_created") for name, _ in s)


def test_summed_over_peers() -> None:
    s = samples(two_peers(False))
    assert not any(dict(labels).get("peer") for _, labels in s)
    assert s[("tortie_bgp_session_state", (("state", "established"),))] == 1
    assert s[("tortie_bgp_session_state", (("state", "active"),))] == 1
    assert s[("tortie_bgp_messages_received_total", (("type", "update"),))] == 7
    assert s[("tortie_bgp_prefixes_received", (("afi_safi", "ipv4_unicast"),))] == 15
    assert s[("tortie_bgp_peers", (("state", "established"),))] == 1


def test_a_removed_peer_leaves_no_series() -> None:
    m = two_peers(True)
    forget_peer(m, "10.0.0.2")
    s = samples(m)
    assert not any(dict(labels).get("peer") == "10.0.0.2" for _, labels in s)
    assert s[("tortie_bgp_peers", (("state", "active"),))] == 0
    assert s[("tortie_bgp_messages_received_total", (("peer", "10.0.0.1"), ("type", "update")))] == 3


async def get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data


async def test_metrics_disabled_is_a_404_and_health_stays() -> None:
    server = ManagementServer(BgpMetrics().registry, port=0, metrics=False)
    await server.start()
    try:
        assert b"404" in (await get(server.port, "/metrics")).split(b"\r\n", 1)[0]
        assert b"200" in (await get(server.port, "/liveness")).split(b"\r\n", 1)[0]
    finally:
        await server.close()


def test_states_set_in_bulk_are_counted_once_and_a_change_moves_the_series() -> None:
    m = BgpMetrics(per_peer=True)
    for i in range(3):
        m.set_state(f"10.0.0.{i}", "Established", count=False)
    m.set_state("10.0.0.1", "Established", count=False)  # unchanged: nothing to redo
    m.set_state("10.0.0.2", "Idle", count=False)
    m._count_states()
    s = samples(m)
    assert s[("tortie_bgp_peers", (("state", "established"),))] == 2
    assert s[("tortie_bgp_peers", (("state", "idle"),))] == 1
    assert s[("tortie_bgp_session_state", (("peer", "10.0.0.2"), ("state", "idle")))] == 1
    assert s[("tortie_bgp_session_state", (("peer", "10.0.0.2"), ("state", "established")))] == 0


def test_refresh_reads_a_live_mesh_and_keeps_each_peers_series_objects() -> None:
    text = mesh_yaml(3)
    net = Net()
    speakers = {}
    for name in ("n1", "n2", "n3"):
        topo, model = topology(text, name)
        speakers[name] = net.add(topo, model=model)
    assert net.run(30, lambda: all(established(s) and len(learned(s)) == 2 for s in speakers.values()))
    sp = speakers["n1"]
    m = BgpMetrics()
    refresh(m, sp)
    first = {k: (c.established, c.received.get(2), c.family(m, IPV4_UNICAST)) for k, c in m.peer_children.items()}
    assert set(first) == set(sp.peers)
    s = samples(m)
    for key, peer in sp.peers.items():
        assert s[("tortie_bgp_established_transitions_total", (("peer", key),))] == 1
        assert s[("tortie_bgp_messages_received_total", (("peer", key), ("type", "update")))] == \
            peer.session.received[2] > 0
        assert s[("tortie_bgp_prefixes_received", (("afi_safi", "ipv4_unicast"), ("peer", key)))] == 1
        assert s[("tortie_bgp_prefixes_advertised", (("afi_safi", "ipv4_unicast"), ("peer", key)))] >= 1
    # a second scrape finds the same series objects and moves them with the speaker's counts
    some = next(iter(sp.peers))
    sp.peers[some].session.received[2] += 5
    refresh(m, sp)
    again = {k: (c.established, c.received.get(2), c.family(m, IPV4_UNICAST)) for k, c in m.peer_children.items()}
    assert all(a is b for k in first for a, b in zip(first[k][:2], again[k][:2]))
    assert samples(m)[("tortie_bgp_messages_received_total", (("peer", some), ("type", "update")))] == \
        sp.peers[some].session.received[2]
    forget_peer(m, some)
    assert some not in m.peer_children
    assert not any(dict(labels).get("peer") == some for _, labels in samples(m))
