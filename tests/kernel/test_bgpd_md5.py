"""TCP MD5 (RFC 2385, Linux TCP_MD5SIG) between tortie-bgpd nodes: matched passwords establish, a
mismatch never does. Each node reads its own password file through a node-specific BGPPeer. Root only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    Cluster,
    NodeSpec,
    bgp_config_doc,
    bridged_cluster,
    cluster_docs,
    diag,
    peer_doc,
    pool_doc,
    wait_for,
)

NODES = [
    NodeSpec("ma", "10.79.0.1", ["10.202.0.0/26"]),
    NodeSpec("mb", "10.79.0.2", ["10.202.0.64/26"]),
    NodeSpec("xa", "10.79.0.3", ["10.202.0.128/26"]),
    NodeSpec("xb", "10.79.0.4", ["10.202.0.192/26"]),
]
MISMATCH_WINDOW = 20.0  # seconds: several connect retries of the active side


def _password_peer(tmp: Path, node: NodeSpec, peer: NodeSpec, password: str) -> dict[str, object]:
    path = tmp / f"password-{node.name}"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return peer_doc(f"{node.name}-to-{peer.name}", node=node.name, peerIP=peer.address, asNumber=64512,
                    password={"file": str(path)})


@pytest.fixture(scope="module")
def md5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root()
    require_tools("ip")
    tmp = tmp_path_factory.mktemp("md5")
    ma, mb, xa, xb = NODES
    peers = [
        _password_peer(tmp, ma, mb, "s3cret-shared"),
        _password_peer(tmp, mb, ma, "s3cret-shared"),
        _password_peer(tmp, xa, xb, "s3cret-one"),
        _password_peer(tmp, xb, xa, "s3cret-other"),
    ]
    docs = cluster_docs(NODES, [pool_doc("10.202.0.0/16")], bgp_config_doc(nodeToNodeMeshEnabled=False), peers)
    with bridged_cluster(tmp, NODES, docs) as c:
        yield c


def test_matched_passwords_establish_and_exchange_blocks(md5: Cluster) -> None:
    ma, mb = md5.bgpd["ma"], md5.bgpd["mb"]
    wait_for(lambda: ma.established(NODES[1].address) and mb.established(NODES[0].address), 60,
             "the MD5 session ma-mb Established", diag=diag(ma, mb))
    wait_for(lambda: "10.202.0.64/26" in ma.learned() and "10.202.0.0/26" in mb.learned(), 30,
             "ma and mb to exchange blocks", diag=diag(ma, mb))
    # the kernel signs the segments: the socket carries the md5 option
    out = ma.host.ns.exec("ss", "-Htni", "state", "established").stdout
    assert "md5" in out, out


def test_mismatched_passwords_never_establish(md5: Cluster) -> None:
    xa, xb = md5.bgpd["xa"], md5.bgpd["xb"]
    a_addr, b_addr = NODES[2].address, NODES[3].address
    deadline = time.monotonic() + MISMATCH_WINDOW
    states: set[str] = set()
    while time.monotonic() < deadline:
        pa, pb = xa.peer(b_addr), xb.peer(a_addr)
        assert pa is not None and pb is not None
        states |= {pa["state"], pb["state"]}
        assert pa["state"] != "Established" and pb["state"] != "Established", (pa, pb, diag(xa, xb)())
        # pace the polls: we are watching for something that must not happen
        time.sleep(0.2)
    assert states <= {"Idle", "Connect", "Active"}, states  # never even got an OPEN through
    assert "10.202.0.192/26" not in xa.learned() and "10.202.0.128/26" not in xb.learned()
    # the status says why: the active (lower) side's SYNs are dropped by the kernel (signed with the
    # wrong key), its connect attempts time out, and the reason names the likely cause
    pa, pb = xa.peer(b_addr), xb.peer(a_addr)
    assert pa is not None and pa["state"] in {"Connect", "Active", "Idle"}, pa
    assert pb is not None and pb["state"] in {"Active", "Idle"}, pb
    assert "TCP MD5" in (pa["last_error"] or ""), pa
    assert "OPEN" not in (pa["last_error"] or "") + (pb["last_error"] or ""), (pa, pb)
    neighbor = xa.neighbor(b_addr)
    assert neighbor["uptime_seconds"] in (None, 0), neighbor
    assert not neighbor["messages"]["received"].get("UPDATE"), neighbor
    # the matched pair was unaffected all along
    assert md5.bgpd["ma"].established(NODES[1].address)
