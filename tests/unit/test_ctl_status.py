"""`tortiectl node status` and `tortiectl routes` against real control sockets with canned answers.

The golden output is the `calicoctl node status` table of the Calico routing article, with tortie's
first lines. Rows are in numeric address order (the article happens to list 10.30.0.206 first).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ctl import daemons
from ctl.node_cmd import boxed_table, peer_info, peer_state
from tests.unit.daemon_stub import StubDaemons, run_ctl, stub_daemons

NOW = datetime(2026, 11, 26, 19, 0, 0, tzinfo=UTC).timestamp()
AT_18_42_27 = datetime(2026, 11, 26, 18, 42, 27, tzinfo=UTC).timestamp()
YESTERDAY = datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC).timestamp()

ARTICLE = """\
Calico process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 10.30.0.206  | node-to-node mesh | up    | 18:42:27 | Established |
| 10.30.0.56   | node-to-node mesh | up    | 18:42:27 | Established |
| 10.30.1.66   | node-to-node mesh | up    | 18:42:27 | Established |
+--------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.
"""

EXPECTED = """\
tortie-bgpd is running.
tortie-felixd is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 10.30.0.56   | node-to-node mesh | up    | 18:42:27 | Established |
| 10.30.0.206  | node-to-node mesh | up    | 18:42:27 | Established |
| 10.30.1.66   | node-to-node mesh | up    | 18:42:27 | Established |
+--------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.
"""


def peer(address: str, state: str = "Established", *, family: str = "ipv4", since: float = AT_18_42_27,
         last_error: str = "", peer_type: str = "node-to-node mesh", admin_down: bool = False,
         node: str | None = None) -> dict[str, Any]:
    return {"address": address, "family": family, "peer_type": peer_type, "state": state, "since": since,
            "last_error": last_error, "asn": 64512, "node": node, "admin_down": admin_down}


def bgpd_status(peers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"node": "worker-1", "asn": 64512, "router_id": "10.30.0.5", "uptime_seconds": 1234.5, "peers": peers}


FELIX_STATUS = {"node": "worker-1", "ready": True, "feed_connected": True, "feed_synced": True, "routes": 4,
                "stale": 0, "warnings": [], "last_sync": NOW - 10, "ipip_supported": True,
                "uptime_seconds": 1200.0}

ARTICLE_PEERS = [peer("10.30.1.66", node="worker-3"), peer("10.30.0.206", node="worker-2"),
                 peer("10.30.0.56", node="master")]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC and 'now' is 19:00:00 on 2026-11-26, so SINCE is predictable."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(daemons, "now", lambda: NOW)
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def stubs() -> Iterator[StubDaemons]:
    with stub_daemons() as s:
        yield s


def serve(stubs: StubDaemons, peers: list[dict[str, Any]], felixd: bool = True) -> None:
    stubs.start("bgpd", {"status": lambda: bgpd_status(peers)})
    if felixd:
        stubs.start("felixd", {"status": lambda: FELIX_STATUS, "routes": lambda: ROUTES})


def test_article_table(stubs: StubDaemons, clock: None, capsys: pytest.CaptureFixture[str]) -> None:
    serve(stubs, ARTICLE_PEERS)
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == EXPECTED
    # Same lines as the article's table, only the row order differs (numeric, not textual).
    article_table = ARTICLE.split("IPv4 BGP status\n")[1]
    ours = ran.out.split("IPv4 BGP status\n")[1]
    assert sorted(article_table.splitlines()) == sorted(ours.splitlines())
    assert ours.splitlines()[3:6] == sorted(ours.splitlines()[3:6], key=lambda r: daemons.address_key(r.split("|")[1].strip()))


def test_graceful_restart_line(stubs: StubDaemons, clock: None, capsys: pytest.CaptureFixture[str]) -> None:
    status = {**bgpd_status(ARTICLE_PEERS), "graceful_restart": "restarting: waiting for peers' End-of-RIB"}
    stubs.start("bgpd", {"status": lambda: status})
    stubs.start("felixd", {"status": lambda: FELIX_STATUS})
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert ran.out == EXPECTED.replace(
        "felixd is running.\n",
        "felixd is running.\ntortie-bgpd graceful restart: restarting: waiting for peers' End-of-RIB\n")


def test_boxed_table_centres_headers_like_tablewriter() -> None:
    # tablewriter puts the odd space of a centred header on the right.
    assert boxed_table(["AB", "C"], [["abcde", "x"]]).splitlines() == [
        "+-------+---+",
        "|  AB   | C |",
        "+-------+---+",
        "| abcde | x |",
        "+-------+---+",
    ]


@pytest.mark.parametrize(("given", "state", "info"), [
    (peer("10.0.0.1"), "up", "Established"),
    (peer("10.0.0.1", last_error="Hold timer expired"), "up", "Established"),  # old error, session is up
    (peer("10.0.0.1", "Active", last_error="Hold timer expired"), "start", "Active Hold timer expired"),
    (peer("10.0.0.1", "Connect", last_error="Socket: Connection refused"), "start",
     "Connect Socket: Connection refused"),
    (peer("10.0.0.1", "Active", last_error="connection reset (TCP MD5 mismatch?)"), "start",
     "Active connection reset (TCP MD5 mismatch?)"),
    (peer("10.0.0.1", "OpenSent"), "start", "OpenSent"),
    (peer("10.0.0.1", "OpenConfirm"), "start", "OpenConfirm"),
    (peer("10.0.0.1", "Idle", last_error="Received NOTIFICATION: Cease"), "start",
     "Idle Received NOTIFICATION: Cease"),
    (peer("10.0.0.1", "Idle", admin_down=True), "down", "Idle"),
    (peer("10.0.0.1", "Idle", admin_down=True, last_error="Administratively shut down"), "down",
     "Idle Administratively shut down"),
])
def test_state_and_info(given: dict[str, Any], state: str, info: str) -> None:
    assert (peer_state(given), peer_info(given)) == (state, info)


def test_both_families_states_and_dates(stubs: StubDaemons, clock: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    serve(stubs, [
        peer("fd00:30::206", family="ipv6", peer_type="node-to-node mesh"),
        peer("10.30.0.206", "Active", last_error="Hold timer expired", since=NOW - 5),
        peer("10.30.0.1", "Connect", peer_type="global", since=YESTERDAY,
             last_error="Socket: Connection refused"),
        peer("fd00:30::1", "Idle", family="ipv6", peer_type="route reflector client", admin_down=True),
        peer("10.30.0.99", peer_type="node specific"),
    ])
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert ran.code == 0
    assert ran.out.split("\n\n")[1:] == [
        "IPv4 BGP status\n"
        "+--------------+-------------------+-------+------------+------------------------------------+\n"
        "| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |                INFO                |\n"
        "+--------------+-------------------+-------+------------+------------------------------------+\n"
        "| 10.30.0.1    | global            | start | 2026-11-25 | Connect Socket: Connection refused |\n"
        "| 10.30.0.99   | node specific     | up    | 18:42:27   | Established                        |\n"
        "| 10.30.0.206  | node-to-node mesh | start | 18:59:55   | Active Hold timer expired          |\n"
        "+--------------+-------------------+-------+------------+------------------------------------+",
        "IPv6 BGP status\n"
        "+--------------+------------------------+-------+----------+-------------+\n"
        "| PEER ADDRESS |       PEER TYPE        | STATE |  SINCE   |    INFO     |\n"
        "+--------------+------------------------+-------+----------+-------------+\n"
        "| fd00:30::1   | route reflector client | down  | 18:42:27 | Idle        |\n"
        "| fd00:30::206 | node-to-node mesh      | up    | 18:42:27 | Established |\n"
        "+--------------+------------------------+-------+----------+-------------+\n",
    ]


def test_json_is_the_daemons_answer(stubs: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    serve(stubs, ARTICLE_PEERS)
    ran = run_ctl(capsys, "node", "status", "-o", "json", "--run-dir", str(stubs.run_dir))
    assert ran.code == 0
    doc = json.loads(ran.out)
    assert doc["bgpd"] == {"running": True, "socket": str(stubs.socket("bgpd")), "error": None,
                           "status": bgpd_status(ARTICLE_PEERS)}
    assert doc["felixd"]["running"] is True and doc["felixd"]["status"] == FELIX_STATUS


def test_bgpd_not_running_names_the_socket(stubs: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    stubs.start("felixd", {"status": lambda: FELIX_STATUS})
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert ran.code == 1
    assert ran.out == (f"tortie-bgpd is not running (no socket at {stubs.socket('bgpd')}).\n"
                       "tortie-felixd is running.\n")
    ran = run_ctl(capsys, "node", "status", "-o", "json", "--run-dir", str(stubs.run_dir))
    assert ran.code == 1
    bgpd = json.loads(ran.out)["bgpd"]
    assert bgpd == {"running": False, "socket": str(stubs.socket("bgpd")),
                    "error": f"no socket at {stubs.socket('bgpd')}", "status": None}


def test_felixd_not_running_is_reported_but_not_fatal(stubs: StubDaemons, clock: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    serve(stubs, ARTICLE_PEERS, felixd=False)
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert ran.code == 0
    assert ran.out == EXPECTED.replace("tortie-felixd is running.",
                                       f"tortie-felixd is not running (no socket at {stubs.socket('felixd')}).")


def test_stale_socket_of_a_dead_daemon(stubs: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(stubs.socket("bgpd"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)  # bound, never listening: what a crashed daemon leaves behind
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert ran.code == 1
    assert ran.out.splitlines()[0] == f"tortie-bgpd is not running ({path}: Connection refused)."


def test_socket_that_hangs_up_or_speaks_something_else(stubs: StubDaemons,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    stubs.start_raw("bgpd", b"")
    stubs.start_raw("felixd", b"HTTP/1.0 400 Bad Request\r\n\r\n")
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert (ran.code, ran.out.splitlines()) == (1, [
        f"tortie-bgpd is not reachable ({stubs.socket('bgpd')}: the daemon closed the connection without answering).",
        f"tortie-felixd is not reachable ({stubs.socket('felixd')}: the answer is not the control protocol).",
    ])
    ran = run_ctl(capsys, "routes", "--run-dir", str(stubs.run_dir))
    assert (ran.code, ran.err) == (1, f"tortiectl: tortie-felixd is not reachable ({stubs.socket('felixd')}: the "
                                      "answer is not the control protocol).\n")


def test_daemon_error_is_reported(stubs: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    stubs.start("bgpd", {})  # answers, but knows no `status`
    ran = run_ctl(capsys, "node", "status", "--run-dir", str(stubs.run_dir))
    assert ran.code == 1
    assert ran.err.startswith("tortiectl: tortie-bgpd: bad request or unknown method")


def test_run_dir_from_environment_and_before_the_verb(stubs: StubDaemons, clock: None,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    serve(stubs, ARTICLE_PEERS)
    monkeypatch.setenv("TORTIE_RUN_DIR", str(stubs.run_dir))
    assert run_ctl(capsys, "node", "status").out == EXPECTED
    monkeypatch.setenv("TORTIE_RUN_DIR", os.path.join(str(stubs.run_dir), "elsewhere"))
    assert run_ctl(capsys, "node", "--run-dir", str(stubs.run_dir), "status").out == EXPECTED
    ran = run_ctl(capsys, "node", "status")
    assert ran.code == 1 and os.path.join(str(stubs.run_dir), "elsewhere", "bgpd.sock") in ran.out


# ------------------------------------------------------------------------------------------ routes

ROUTES: list[dict[str, Any]] = [
    {"prefix": "192.168.25.0/26", "kind": "unicast", "gateway": "10.30.0.206", "dev": "eth0", "onlink": False,
     "scope_link": False, "mode": "direct", "pool": "default-ipv4-ippool", "stale": False, "in_kernel": True},
    {"prefix": "192.168.105.128/26", "kind": "unicast", "gateway": "10.30.1.66", "dev": "tunl0",
     "onlink": True, "scope_link": False, "mode": "ipip", "pool": "default-ipv4-ippool", "stale": True,
     "in_kernel": True},
    {"prefix": "192.168.226.64/26", "kind": "blackhole", "gateway": None, "dev": None, "onlink": False,
     "scope_link": False, "mode": "local-block", "pool": "default-ipv4-ippool", "stale": False,
     "in_kernel": True},
    {"prefix": "192.168.226.65/32", "kind": "unicast", "gateway": None, "dev": "cali1a2b3c4d5e6",
     "onlink": False, "scope_link": True, "mode": "workload", "pool": None, "stale": False, "in_kernel": False},
]


def test_routes_table(stubs: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    serve(stubs, [])
    ran = run_ctl(capsys, "routes", "--run-dir", str(stubs.run_dir))
    assert (ran.code, ran.err) == (0, "")
    assert ran.out.splitlines() == [
        "DESTINATION          GATEWAY       DEVICE            FLAGS        MODE          POOL                  KERNEL",
        "192.168.25.0/26      10.30.0.206   eth0              -            direct        default-ipv4-ippool   ok",
        "192.168.105.128/26   10.30.1.66    tunl0             onlink       ipip          default-ipv4-ippool   stale",
        "192.168.226.64/26    -             -                 blackhole    local-block   default-ipv4-ippool   ok",
        "192.168.226.65/32    -             cali1a2b3c4d5e6   scope link   workload      -                     missing",
    ]
    assert stubs.calls[-1] == ("felixd", "routes", {})


def test_routes_json_and_empty(stubs: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    serve(stubs, [])
    ran = run_ctl(capsys, "routes", "-o", "json", "--run-dir", str(stubs.run_dir))
    assert ran.code == 0 and json.loads(ran.out) == ROUTES
    stubs.stop("felixd")
    stubs.start("felixd", {"routes": lambda: []})
    assert run_ctl(capsys, "routes", "--run-dir", str(stubs.run_dir)).out == "No routes programmed.\n"


def test_routes_without_felixd(stubs: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "routes", "--run-dir", str(stubs.run_dir))
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == f"tortiectl: tortie-felixd is not running (no socket at {stubs.socket('felixd')}).\n"
