"""Scenario: TCP MD5 (RFC 2385) between tortie and the daemon.

Matching passwords (tortie's from a `password: {file: ...}` BGPPeer option, the daemon's from its own
config) establish; a mismatch never does: the kernel drops the unsigned or wrongly signed segments,
so tortie's session never reaches OpenSent and its status says why (last_error).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.daemons import DaemonNeighbor, poll
from tests.interop.interop_support import BIN, D_ROUTES, DAEMONS, Fabric, pair, peer_cluster, v4

pytestmark = [pytest.mark.root, pytest.mark.daemons]

CASES = [
    pytest.param("s3cret-md5", "s3cret-md5", id="match", marks=pytest.mark.interop("md5-match")),
    pytest.param("s3cret-md5", "other-md5", id="mismatch", marks=pytest.mark.interop("md5-mismatch")),
]


@pytest.mark.parametrize(("ours", "theirs"), CASES)
@pytest.mark.parametrize("kind", DAEMONS)
def test_md5(kind: str, ours: str, theirs: str, fabric: Fabric, work: Path) -> None:
    pw = work / "bgp-password"
    pw.write_text(ours + "\n")
    pw.chmod(0o600)
    cfg = peer_cluster(password={"file": str(pw)})
    with pair(kind, fabric, work, cfg, DaemonNeighbor(v4(1), 64512, passive=True, password=theirs)) as p, p.views():
        t, d = p.tortie, p.daemon
        if ours == theirs:
            t.wait_state(v4(10), timeout=60)
            d.wait_established(v4(1), 30)
            t.wait_routes(v4(10), D_ROUTES, 30)
            return
        # A mismatch: the kernel drops every segment, so the connect never completes and tortie never
        # gets as far as OpenSent; when its ConnectRetryTimer (30 s, jittered) fires on the pending
        # connect, last_error names the likely cause.
        seen: list[str] = []

        def watch() -> bool:
            peer = t.peer(v4(10))
            seen.append(peer["state"])
            return bool(peer["last_error"])

        assert poll(watch, 40, 0.1), f"no last_error after 40 s; states {sorted(set(seen))}"
        assert not set(seen) & {"OpenSent", "OpenConfirm", "Established"}, sorted(set(seen))
        status = t.peer(v4(10))
        assert "MD5" in status["last_error"], status
        assert status["state"] in ("Connect", "Active", "Idle"), status
        # the operator's view: `tortiectl node status` shows the reason too
        shown = subprocess.run([str(BIN / "tortiectl"), "-c", str(p.config), "node", "status", "--run-dir",
                                str(t.run_dir)], capture_output=True, text=True, timeout=30)
        assert "MD5" in shown.stdout, shown.stdout + shown.stderr
        assert not d.established(v4(1))
        assert not any(t.neighbor(v4(10))["messages"]["received"].values())
