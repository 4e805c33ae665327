"""What tortiectl shows of BFD and of block ownership, against control sockets with canned answers:
the BFD column of `node status` (only when some peer runs BFD), the BFD line of `bgp neighbors` (only
for peers with BFD), and
refused routes in `bgp rib --peer`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.daemon_stub import StubDaemons, run_ctl, stub_daemons
from tests.unit.test_ctl_bgp import NOW, UP, clock, detail, rib_entry
from tests.unit.test_ctl_status import FELIX_STATUS, bgpd_status

__all__ = ["clock"]

BFD = {"state": "Up", "remote_state": "Up", "diagnostic": "no diagnostic", "remote_diagnostic": "no diagnostic",
       "local_address": "10.30.0.56", "local_discriminator": 0x1A2B3C4D, "remote_discriminator": 0x5E6F7A8B,
       "since": NOW - 61, "uptime_seconds": 61.2, "min_rx_ms": 300, "min_tx_ms": 300, "multiplier": 3,
       "remote_min_rx_ms": 300.0, "remote_min_tx_ms": 300.0, "remote_multiplier": 3, "tx_interval_ms": 300.0,
       "detection_time_ms": 900.0, "authentication": "keyed-sha1",
       "packets": {"sent": 200, "received": 199, "dropped": {"auth-failed": 2}}, "failures": 1}


def peers(bfd: list[str | None]) -> list[dict[str, Any]]:
    out = []
    for i, state in enumerate(bfd):
        out.append({"address": f"10.30.0.{10 + i}", "family": "ipv4", "peer_type": "node-to-node mesh",
                    "state": "Established", "since": NOW - 100, "last_error": "", "asn": 64512, "node": None,
                    "admin_down": False, "bfd": state})
    return out


@pytest.fixture
def stubs() -> Iterator[StubDaemons]:
    with stub_daemons() as s:
        yield s


def status_table(stubs: StubDaemons, capsys: pytest.CaptureFixture[str], bfd: list[str | None]) -> list[str]:
    stubs.start("bgpd", {"status": lambda: bgpd_status(peers(bfd))})
    stubs.start("felixd", {"status": lambda: FELIX_STATUS})
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert (ran.code, ran.err) == (0, "")
    return ran.out.splitlines()


def test_node_status_has_a_bfd_column_only_when_some_peer_runs_bfd(stubs: StubDaemons, clock: None,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    lines = status_table(stubs, capsys, ["Up", None])
    head = next(line for line in lines if "PEER ADDRESS" in line)
    assert head.split("|")[-2].strip() == "BFD"
    rows = [line for line in lines if line.startswith("| 10.30.0.")]
    assert [r.split("|")[-2].strip() for r in rows] == ["Up", "-"]


def test_node_status_without_bfd_keeps_calicoctl_shape(stubs: StubDaemons, clock: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    lines = status_table(stubs, capsys, [None, None])
    head = next(line for line in lines if "PEER ADDRESS" in line)
    assert [c.strip() for c in head.split("|")[1:-1]] == ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]


def test_neighbors_show_the_bfd_session(stubs: StubDaemons, clock: None, capsys: pytest.CaptureFixture[str]) -> None:
    with_bfd = {**UP, "bfd_session": BFD}
    down = detail("10.30.0.1", "Idle", bfd_session={**BFD, "state": "Down", "uptime_seconds": None,
                                                    "diagnostic": "control detection time expired"})
    stubs.start("bgpd", {"neighbors": lambda peer=None: [with_bfd, down, detail("10.30.0.2", "Idle")]})
    ran = run_ctl(capsys, "bgp", "neighbors", "--run-dir", str(stubs.run_dir))
    bfd_lines = [line.strip() for line in ran.out.splitlines() if line.strip().startswith("BFD:")]
    assert bfd_lines == [
        "BFD:                        Down (control detection time expired), rx 300 ms / tx 300 ms x 3, detection "
        "900 ms, discriminators 0x1a2b3c4d / 0x5e6f7a8b, keyed-sha1; packets 200 sent, 199 received, 2 dropped; "
        "1 failures",
        "BFD:                        Up for 1m01s, rx 300 ms / tx 300 ms x 3, detection 900 ms, discriminators "
        "0x1a2b3c4d / 0x5e6f7a8b, keyed-sha1; packets 200 sent, 199 received, 2 dropped; 1 failures",
    ]


def test_rib_of_a_peer_shows_refused_routes_with_the_reason(stubs: StubDaemons,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    entries = [
        rib_entry("192.168.1.0/26", "10.30.0.3", "10.30.0.3", True, reason=""),
        rib_entry("192.168.2.0/26", "10.30.0.3", "10.30.0.3", False, refused=True,
                  reason="refused: not-block-owner (block of node worker-2, announced for node worker-3)"),
    ]
    stubs.start("bgpd", {"rib": lambda prefix=None, peer=None, direction="in": entries})
    ran = run_ctl(capsys, "bgp", "rib", "--peer", "10.30.0.3", "--run-dir", str(stubs.run_dir))
    rows = ran.out.splitlines()[1:]
    assert rows[0].split()[3] == "yes"
    assert rows[1].split()[3] == "refused"
    assert rows[1].endswith("refused: not-block-owner (block of node worker-2, announced for node worker-3)")
