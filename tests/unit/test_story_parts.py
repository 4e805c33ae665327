"""The demo's pure parts: the article's route predictions, pool files, VXLAN decoding, the results'
JSON form, the report's grid, and the story's timing rule (pairs that must fail are never timed)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab import article, report, routewatch
from lab.article import PAIRS, PredictedRoute, expected_routes
from lab.capture import _packets, decode_vxlan, summarise
from lab.probe import Probe
from lab.results import CaptureSummary, DualStack, Flow, NatResult, Run, StepResult
from lab.routewatch import Converged, RouteWatch, mismatches
from lab.story import Story, replace_pool
from lab.topology import SEED_CLUSTER, seed_scenario
from proto.resources import load_model

REPO = Path(__file__).resolve().parents[2]
SEED = SEED_CLUSTER.read_text()


def model_with(pool_file: str | None):  # type: ignore[no-untyped-def]
    text = SEED if pool_file is None else replace_pool(SEED, (REPO / "configs" / pool_file).read_text())
    return load_model(text, pool_file or "seed")


def shapes(pool_file: str | None, host: str) -> dict[str, str]:
    return {k: v.text() for k, v in expected_routes(model_with(pool_file), seed_scenario(), host).items()}


def test_seed_is_dual_stack_with_a_vxlan_ipv6_pool() -> None:
    m = model_with(None)
    v6 = [p for p in m.pools if p.cidr.version == 6]
    assert len(v6) == 1 and v6[0].vxlan_mode == "Always" and v6[0].ipip_mode == "Never"
    assert all(n.ipv6_address is not None for n in m.nodes)
    sc = seed_scenario()
    assert sc.dual_stack and all(p.ip6 for p in sc.pods)
    assert sc.subnet("s1").cidr6 == "fd00:10:30::/64" and sc.subnet("s2").gateway6 == "fd00:10:30:1::1"


def test_the_articles_routes_per_step() -> None:
    w2, w3, m = "192.168.133.192/26", "192.168.97.192/26", "192.168.219.64/26"
    ipip = shapes(None, "worker-1")
    assert ipip[w2] == f"{w2} via 10.30.0.56 dev tunl0 onlink"
    assert ipip[w3] == f"{w3} via 10.30.1.66 dev tunl0 onlink"
    direct = shapes("ippool-direct.yaml", "worker-1")
    assert direct[w2] == f"{w2} via 10.30.0.56 dev eth0" and direct[w3] == f"{w3} via 10.30.0.1 dev eth0"
    assert shapes("ippool-direct.yaml", "worker-3")[m] == f"{m} via 10.30.1.1 dev eth0"
    cross = shapes("ippool-crosssubnet.yaml", "worker-1")
    assert cross[w2] == f"{w2} via 10.30.0.56 dev eth0" and cross[w3] == f"{w3} via 10.30.1.66 dev tunl0 onlink"
    vcross = shapes("ippool-vxlan-crosssubnet.yaml", "worker-1")
    assert vcross[w3] == f"{w3} via 192.168.97.192 dev vxlan.calico onlink"
    vx = shapes("ippool-vxlan.yaml", "worker-1")
    assert vx[w2] == f"{w2} via 192.168.133.192 dev vxlan.calico onlink"
    # the IPv6 pool does not change with the IPv4 one: VXLAN to every node, the VTEP its block's first address
    for pool_file in (None, "ippool-direct.yaml", "ippool-vxlan.yaml"):
        v6 = {k: v for k, v in shapes(pool_file, "worker-1").items() if ":" in k}
        assert v6 == {b: f"{b} via {b.split('/')[0]} dev vxlan-v6.calico onlink"
                      for b in ("fd00:192:168:219::/122", "fd00:192:168:133::/122", "fd00:192:168:97::/122")}


def test_steps_are_the_articles_in_order() -> None:
    assert [s.key for s in article.STEPS] == ["1", "2a", "2b", "3", "3v", "4"]
    assert [s.key for s in article.STEPS if s.needs_ipip] == ["1", "3"]
    for s in article.STEPS:
        assert s.pool_file is None or (REPO / "configs" / s.pool_file).exists()
        assert set(s.expected) == set(PAIRS)


def test_pool_document_and_replace_pool() -> None:
    doc = article.pool_document(SEED)
    assert doc.startswith("apiVersion: projectcalico.org/v3\nkind: IPPool") and "ipipMode: Always" in doc
    assert "default-ipv6-ippool" not in doc
    replaced = replace_pool(SEED, (REPO / "configs" / "ippool-vxlan.yaml").read_text())
    m = load_model(replaced, "x")
    assert {p.name: p.vxlan_mode for p in m.pools} == {"default-ipv4-ippool": "Always", "default-ipv6-ippool": "Always"}
    assert len(m.nodes) == 4


def test_route_mismatches_say_what_differs() -> None:
    want = {"10.0.0.0/26": PredictedRoute("10.0.0.0/26", "1.1.1.1", "tunl0", True)}
    assert mismatches(want, {"10.0.0.0/26": PredictedRoute("10.0.0.0/26", "1.1.1.1", "tunl0", True)}) == []
    [problem] = mismatches(want, {"10.0.0.0/26": PredictedRoute("10.0.0.0/26", "1.1.1.1", "eth0")})
    assert "want `10.0.0.0/26 via 1.1.1.1 dev tunl0 onlink`" in problem and "dev eth0" in problem
    assert "nothing" in mismatches(want, {})[0]



def test_a_route_read_that_times_out_is_retried_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the VM's emulation on a loaded machine one `ip route` once took over 30 s: the watch
    tries again instead of ending the story; a host never read is reported, not raised."""
    pairs = [socket.socketpair() for _ in range(2)]
    socks = iter(a for a, _ in pairs)
    monkeypatch.setattr(routewatch, "_netlink_socket_in", lambda _ns: next(socks))
    want = {"10.0.0.0/26": PredictedRoute("10.0.0.0/26", "1.1.1.1", "tunl0", True)}
    reads: dict[str, int] = {"h1": 0, "h2": 0}

    def fake_routes(ns: str, timeout: float) -> dict[str, PredictedRoute | str]:
        reads[ns] += 1
        if ns == "h2" or reads[ns] == 1:
            raise subprocess.TimeoutExpired(["ip"], timeout)
        return dict(want)

    monkeypatch.setattr(routewatch, "kernel_routes", fake_routes)
    watch = RouteWatch({"h1": "h1", "h2": "h2"}, rescan=0.01, read_timeout=1.0)
    try:
        got = watch.wait({"h1": want, "h2": want}, time.monotonic(), 0.3)
    finally:
        watch.close()
        for _, b in pairs:
            b.close()
    assert reads["h1"] == 2 and "h1" in got.seconds
    assert got.missing == {"h2": ["its routes could not be read within 1 s"]} and got.all is None


def _vxlan_packet(outer: tuple[str, str], inner: tuple[str, str], vni: int = 4096) -> bytes:
    def ip(src: str, dst: str, proto: int, payload: bytes) -> bytes:
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        if s.version == 4:
            return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0, s.packed,
                               d.packed) + payload
        return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, 64, s.packed, d.packed) + payload
    v = ipaddress.ip_address(inner[0]).version
    frame = b"\x66" * 6 + b"\x66" * 6 + (b"\x08\x00" if v == 4 else b"\x86\xdd") + ip(*inner, 6, b"\0" * 20)
    vx = struct.pack("!B3s3sB", 0x08, b"\0\0\0", vni.to_bytes(3, "big"), 0)
    udp = struct.pack("!HHHH", 40000, 4789, 8 + len(vx) + len(frame), 0) + vx + frame
    return ip(*outer, 17, udp)


def test_vxlan_decoding_finds_both_layers() -> None:
    p4 = _vxlan_packet(("10.30.0.206", "10.30.0.56"), ("192.168.226.65", "192.168.133.194"))
    p6 = _vxlan_packet(("fd00:10:30::206", "fd00:10:30::56"), ("fd00:192:168:226::1", "fd00:192:168:133::2"))
    assert decode_vxlan(p4) == Flow("10.30.0.206", "10.30.0.56", 4789, 4096, "192.168.226.65", "192.168.133.194")
    assert decode_vxlan(p6) == Flow("fd00:10:30::206", "fd00:10:30::56", 4789, 4096, "fd00:192:168:226::1",
                                    "fd00:192:168:133::2")
    assert decode_vxlan(p4[:30]) is None
    seen, flows = summarise([p4, p4, p6])
    assert seen == 3 and [f.packets for f in flows] == [2, 1]


def test_tcpdump_hex_is_split_per_packet() -> None:
    text = ("12:00:00.1 IP 10.0.0.1.1 > 10.0.0.2.4789: VXLAN\n\t0x0000:  4500 0010\n\t0x0010:  aabb\n"
            "12:00:00.2 IP6 a > b: VXLAN\n\t0x0000:  6000\n")
    assert _packets(text) == [bytes.fromhex("45000010aabb"), bytes.fromhex("6000")]


def _step(key: str = "2b") -> StepResult:
    spec = article.step(key)
    return StepResult(key, spec.name, spec.pool_file, "kind: IPPool\n", spec.srcdst, dict(spec.expected),
                      matrix=dict(spec.expected), expected6=dict.fromkeys(PAIRS, True),
                      matrix6=dict.fromkeys(PAIRS, True), routes={"worker-1": "192.168.133.192/26 via 10.30.0.56 dev eth0"},
                      kernel_seconds={"worker-1": 0.0}, matrix_seconds=0.12, fail_probe=1.0,
                      captures=[CaptureSummary("port", "udp", 2, [Flow("a", "b", 4789, 4096, "c", "d", 2)])])


def test_results_survive_json() -> None:
    run = Run(kernel="6.1", mesh_seconds=2.5, node_status="x", steps=[_step(), _step("4")],
              nat=NatResult("pod-1", "203.0.113.10", "10.30.0.206", "10.30.0.206", 0.2),
              dual_stack=DualStack({"fd00::1": "Established"}, "r", dict.fromkeys(PAIRS, True),
                                   dict.fromkeys(PAIRS, True)), vm={"kernel": "6.1.0-57-amd64"})
    back = Run.loads(run.dumps())
    assert back == run
    assert back.steps[0].ok and back.nat is not None and back.nat.ok and back.dual_stack is not None and back.dual_stack.ok
    assert back.steps[0].route_line("worker-1", "192.168.133.192/26").endswith("dev eth0")


def test_report_grid_cells_carry_what_they_show() -> None:
    r = _step("2b")
    r.matrix[("pod-1", "pod-3")] = True  # not what the article says: marked
    html = report.render(Run(kernel="k", steps=[r]), seed_scenario())
    assert 'data-family="IPv4" data-src="pod-1" data-dst="pod-2" data-ok="true" data-expected="true"' in html
    assert 'class="cell unexpected" data-family="IPv4" data-src="pod-1" data-dst="pod-3" data-ok="true" ' \
           'data-expected="false"' in html
    assert 'class="cell na" data-family="IPv4" data-src="pod-2" data-dst="pod-3"' in html
    assert html.count('class="step"') == 1 and "<svg" in html and "http" not in html.split("<body>")[1]


class _FakeProbers:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[tuple[str, str], ...], float]] = []

    def probe(self, requests: list[tuple[str, str, str]], timeout: float) -> dict[tuple[str, str], Probe]:
        self.calls.append((tuple((s, n) for s, n, _ in requests), timeout))
        works = {("pod-1", "pod-2"), ("pod-2", "pod-1")}
        return {(s, n): Probe((s, n) in works, n if (s, n) in works else "", 0.01) for s, n, _ in requests}


class _FakeWatch:
    def join(self) -> Converged:
        return Converged(seconds={h: 0.1 for h in ("master", "worker-1", "worker-2", "worker-3")})


def test_pairs_that_must_fail_are_probed_once_outside_the_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = SimpleNamespace(load=lambda: SimpleNamespace(scenario=seed_scenario()))
    story = Story(lab)  # type: ignore[arg-type]
    fake = _FakeProbers()
    story.probers = fake  # type: ignore[assignment]
    story.watch = _FakeWatch()  # type: ignore[assignment]
    monkeypatch.setattr(story, "host_routes", lambda host: "")
    spec = article.step("2b")
    result = _step("2b")
    result.matrix, result.matrix6, result.expected6 = {}, {}, {}
    story._measure(spec, result, since=0.0, deadline=60.0)
    timed = [c for c in fake.calls if c[1] == story.pass_probe]
    must_fail = {p for p, ok in spec.expected.items() if not ok}
    assert timed and all(not (set(pairs) & must_fail) for pairs, _ in timed)
    fixed = [pair for pairs, t in fake.calls if t == story.fail_probe for pair in pairs if pair in must_fail]
    assert sorted(fixed) == sorted(must_fail)  # once each, with the fixed time-out
    assert result.matrix == spec.expected and result.matrix_seconds is not None
