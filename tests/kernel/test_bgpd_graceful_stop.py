"""Restarts without losing routes, and leaving for good. Both speakers set the N bit of graceful restart
(RFC 8538), so a stop for a restart (SIGTERM, `systemctl stop`, `tortiectl bgp graceful-stop`) sends
Cease / Administrative Reset and the peer keeps the node's routes as stale; the next start is a
restarting speaker and the routes are fresh again. `tortiectl node drain` sends a Hard Reset instead
and the peer withdraws at once. Real tortie-bgpd processes in namespaces; root only."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from lab.netns import NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    BIN,
    PREFIX,
    Bgpd,
    NodeSpec,
    bridged_hosts,
    cluster_docs,
    diag,
    pool_doc,
    wait_for,
    write_cluster,
)

NODES = [NodeSpec("sa", "10.81.0.1", ["10.204.0.0/26"]), NodeSpec("sb", "10.81.0.2", ["10.204.0.64/26"])]


@dataclass
class Pair:
    a: Bgpd
    b: Bgpd


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    require_root()
    require_tools("ip")
    tmp = tmp_path_factory.mktemp("gstop")
    config = tmp / "cluster.yaml"
    write_cluster(config, cluster_docs(NODES, [pool_doc("10.204.0.0/16")]))
    nss = NetnsSet(prefix=PREFIX)
    try:
        hosts = bridged_hosts(nss, [(n.name, n.address) for n in NODES])
        a, b = (Bgpd(nss, hosts[n.name], config, tmp / "run" / n.name) for n in NODES)
        a.start()
        b.start()
        wait_for(lambda: "10.204.0.64/26" in a.learned() and "10.204.0.0/26" in b.learned(), 60,
                 "blocks exchanged", diag=diag(a, b))
        yield Pair(a, b)
    finally:
        nss.close()


def graceful_restart_of_a(pair: Pair, stop: Callable[[], None]) -> str:
    """Stop a with `stop`, check b keeps a's block (stale) throughout, start a again; returns what b
    last received from a."""
    a, b = pair.a, pair.b
    block = "10.204.0.64/26"
    wait_for(lambda: a.established(NODES[1].address) and not b.learned().get("10.204.0.0/26", {}).get("stale"),
             60, "a and b Established, a's block fresh at b", diag=diag(a, b))
    stop()
    assert (a.run_dir / "bgpd.running").exists()  # the next start is a restarting speaker
    # b keeps a's block, marked stale, and never loses it while a is away
    wait_for(lambda: b.learned().get("10.204.0.0/26", {}).get("stale"), 30, "a's block stale at b",
             diag=diag(b))
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # an observation window: the route must hold throughout
        assert "10.204.0.0/26" in b.learned()
        time.sleep(0.05)
    last = b.neighbor(NODES[0].address)["last_notification_received"] or ""
    a.start()
    wait_for(lambda: b.learned().get("10.204.0.0/26", {}).get("stale") is False and block in a.learned(),
             60, "a back, its block fresh at b", diag=diag(a, b))
    assert "10.204.0.0/26" in b.learned()
    return last


def test_n_bit_negotiated(pair: Pair) -> None:
    wait_for(lambda: pair.a.established(NODES[1].address), 60, "a and b Established", diag=diag(pair.a, pair.b))
    caps = pair.b.neighbor(NODES[0].address)["capabilities"]["graceful_restart"]
    assert caps["remote"] and caps["notification"] == "negotiated"


def test_graceful_stop_keeps_the_routes_at_the_peer(pair: Pair) -> None:
    a = pair.a

    def stop() -> None:
        # the operator's way: tortiectl bgp graceful-stop against a's run directory
        proc = a.host.ns.exec(str(BIN / "tortiectl"), "bgp", "--run-dir", str(a.run_dir), "graceful-stop")
        assert "stopping gracefully" in proc.stdout, proc.stderr
        assert a.proc is not None and a.proc.wait(timeout=30) == 0
        a.proc = None

    last = graceful_restart_of_a(pair, stop)
    assert "Administrative Reset" in last and "Hard Reset" not in last, last


def test_sigterm_is_a_graceful_restart(pair: Pair) -> None:
    last = graceful_restart_of_a(pair, lambda: pair.a.kill(signal.SIGTERM))
    assert "Administrative Reset (6/4)" in last and "restarting" in last, last


def test_drain_withdraws_at_once(pair: Pair) -> None:
    a, b = pair.a, pair.b
    wait_for(lambda: a.established(NODES[1].address) and "10.204.0.0/26" in b.learned(), 60,
             "a and b Established", diag=diag(a, b))
    proc = a.host.ns.exec(str(BIN / "tortiectl"), "node", "drain", "--run-dir", str(a.run_dir))
    assert "drained" in proc.stdout, proc.stderr
    t0 = time.monotonic()
    wait_for(lambda: "10.204.0.0/26" not in b.learned(), 10, "a's block withdrawn at b", diag=diag(b))
    withdrawn = time.monotonic() - t0
    assert withdrawn < 5.0, withdrawn  # at once, not after the 120 s restart time
    last = b.neighbor(NODES[0].address)["last_notification_received"] or ""
    assert "Hard Reset" in last and "Administrative Shutdown" in last, last
    assert "10.204.0.64/26" not in a.learned()  # and a dropped b's routes
    assert not (a.run_dir / "bgpd.running").exists()
    assert a.proc is not None
    a.proc.send_signal(signal.SIGTERM)  # a stop after a drain is not a restart: nothing left to tell
    assert a.proc.wait(timeout=30) == 0, a.log_tail()
    a.proc = None
    assert not (a.run_dir / "bgpd.running").exists()
    a.start()
    wait_for(lambda: "10.204.0.0/26" in b.learned() and "10.204.0.64/26" in a.learned(), 60,
             "a back in the cluster after a restart", diag=diag(a, b))
