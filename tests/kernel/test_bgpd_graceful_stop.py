"""An upgrade without losing routes: `graceful_stop` (tortiectl bgp graceful-stop) drops the sessions
without a NOTIFICATION, so the peers keep the node's routes as stale; the next start is a restarting
speaker and the routes are fresh again. A plain SIGTERM, in contrast, sends Cease and the peers
withdraw. Real tortie-bgpd processes in namespaces; root only."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
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


def test_graceful_stop_keeps_the_routes_at_the_peer(pair: Pair) -> None:
    a, b = pair.a, pair.b
    block = "10.204.0.64/26"
    # the operator's way: tortiectl bgp graceful-stop against a's run directory
    proc = a.host.ns.exec(str(BIN / "tortiectl"), "bgp", "--run-dir", str(a.run_dir), "graceful-stop")
    assert "stopping gracefully" in proc.stdout, proc.stderr
    a_proc = a.proc
    assert a_proc is not None and a_proc.wait(timeout=30) == 0
    a.proc = None
    assert (a.run_dir / "bgpd.running").exists()  # the next start is a restarting speaker
    # b keeps a's block, marked stale, and never loses it while a is away
    wait_for(lambda: b.learned().get("10.204.0.0/26", {}).get("stale"), 30, "a's block stale at b",
             diag=diag(b))
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # an observation window: the route must hold throughout
        assert "10.204.0.0/26" in b.learned()
        time.sleep(0.05)
    last = b.neighbor(NODES[0].address)["last_notification_received"]
    assert not last, f"a graceful stop must not send a NOTIFICATION: {last}"
    a.start()
    wait_for(lambda: b.learned().get("10.204.0.0/26", {}).get("stale") is False and block in a.learned(),
             60, "a back, its block fresh at b", diag=diag(a, b))
    assert "10.204.0.0/26" in b.learned()


def test_sigterm_sends_cease_and_the_peer_withdraws(pair: Pair) -> None:
    a, b = pair.a, pair.b
    wait_for(lambda: a.established(NODES[1].address), 60, "a and b Established", diag=diag(a, b))
    a.kill(signal.SIGTERM)
    wait_for(lambda: "10.204.0.0/26" not in b.learned(), 30, "a's block withdrawn at b", diag=diag(b))
    assert "Cease" in (b.neighbor(NODES[0].address)["last_notification_received"] or "")
    assert not (a.run_dir / "bgpd.running").exists()
    a.start()
    wait_for(lambda: "10.204.0.0/26" in b.learned(), 60, "a back", diag=diag(a, b))
