"""Scenario: RFC 8538 (the N bit of graceful restart) with BIRD 2 and FRR.

tortie advertises the N bit. A stop of tortie-bgpd for a restart (SIGTERM, what `systemctl restart`
does) sends Cease / Administrative Reset where the N bit is negotiated (no NOTIFICATION otherwise), and
the daemon keeps tortie's routes throughout, checked in its RIB every few hundred ms, until tortie is
back. `tortiectl node drain` sends a Hard Reset (Cease, subcode 9) where the N bit is negotiated, a
plain Cease / Administrative Shutdown otherwise: the daemon drops tortie's routes at once.

FRR 8.4 (Debian 12) negotiates the N bit. BIRD 2.0.12 (Debian 12) does not advertise it (RFC 8538
came to BIRD later), so with BIRD tortie's restart is the RFC 4724 one, without a NOTIFICATION; both
are checked to be hitless.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.daemons import DaemonNeighbor, poll
from tests.interop.interop_support import BIN, T1_BLOCK, Fabric, pair, v4
from tests.interop.test_interop_gr import Watch, with_blocks

pytestmark = [pytest.mark.root, pytest.mark.daemons]
KINDS = ("bird2", "frr")


@pytest.mark.interop("gr-notification-restart")
@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_restart_keeps_routes(kind: str, fabric: Fabric, work: Path) -> None:
    neighbor = DaemonNeighbor(v4(1), 64512, passive=True, graceful_restart=True)
    with pair(kind, fabric, work, with_blocks(extra=False), neighbor) as p, p.views():
        t, d = p.tortie, p.daemon
        t.wait_state(v4(10), timeout=60)
        d.wait_prefixes([T1_BLOCK], 30)
        gr = t.neighbor(v4(10))["capabilities"]["graceful_restart"]
        assert gr["remote"], gr
        negotiated = gr["notification"] == "negotiated"
        print(f"{kind}: N bit {'negotiated' if negotiated else 'not advertised by the daemon'}")
        with Watch(lambda: T1_BLOCK in d.rib_prefixes()) as watch:
            t.stop()  # SIGTERM: a graceful restart
            assert (t.run_dir / "bgpd.running").exists()
            assert poll(lambda: watch.samples >= 8, 20)
            t.start(fresh=False)
            t.wait_state(v4(10), timeout=60)
            assert poll(lambda: watch.samples >= 4, 10)
        assert not watch.missing, f"{T1_BLOCK} missing from {kind}'s RIB at {watch.missing} s"
        if kind == "frr":
            assert negotiated, "FRR 8.4 negotiates the N bit"
        log = t.log_tail(100_000)
        if negotiated:
            assert "Administrative Reset" in log, "with the N bit, the stop says so with a NOTIFICATION"


@pytest.mark.interop("gr-notification-drain")
@pytest.mark.parametrize("kind", KINDS)
def test_drain_withdraws_at_once(kind: str, fabric: Fabric, work: Path) -> None:
    neighbor = DaemonNeighbor(v4(1), 64512, passive=True, graceful_restart=True)
    with pair(kind, fabric, work, with_blocks(extra=False), neighbor) as p, p.views():
        t, d = p.tortie, p.daemon
        t.wait_state(v4(10), timeout=60)
        d.wait_prefixes([T1_BLOCK], 30)
        proc = t.ns.exec(str(BIN / "tortiectl"), "node", "drain", "--run-dir", str(t.run_dir))
        assert "drained" in proc.stdout, proc.stderr
        t0 = time.monotonic()
        d.wait_prefixes([T1_BLOCK], 10, present=False)
        assert time.monotonic() - t0 < 5.0
        sent = t.neighbor(v4(10))["last_notification_sent"] or ""
        gr = t.neighbor(v4(10))["capabilities"]["graceful_restart"]
        want = "Hard Reset" if gr["notification"] == "negotiated" else "Administrative Shutdown"
        assert want in sent, sent
