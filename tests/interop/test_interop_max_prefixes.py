"""Scenario: the daemon sends more prefixes than the BGPPeer's `maxPrefixes` allows.

tortie sends Cease/1 (maximum number of prefixes reached; last_notification_sent says so), the
daemon shows or logs the reason, and tortie tries again after its back-off (30 s): the session goes
back through OpenSent (in tortie's log of state changes) within about 40 s, and since the daemon
still sends too many, tortie sends Cease/1 a second time.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from lab.daemons import DaemonNeighbor, Route, poll
from tests.interop.interop_support import DAEMONS, Fabric, pair, peer_cluster, v4
from tests.interop.test_interop_notifications import daemon_shows

pytestmark = [pytest.mark.root, pytest.mark.daemons]

LIMIT = 3
# how each daemon words "the peer sent Cease/1": BIRD "Maximum number of prefixes reached", FRR
# "Maximum Number of Prefixes Reached", GoBGP "subcode 1(maximum number of prefixes reached)"
REASON = re.compile(r"maximum number of prefixes", re.I)
ROUTES = [Route(f"192.168.{30 + i}.0/24") for i in range(6)]


@pytest.mark.interop("max-prefixes")
@pytest.mark.parametrize("kind", DAEMONS)
def test_max_prefixes(kind: str, fabric: Fabric, work: Path) -> None:
    neighbor = DaemonNeighbor(v4(1), 64512, passive=True)
    with pair(kind, fabric, work, peer_cluster(maxPrefixes=LIMIT), neighbor, ROUTES) as p, p.views():
        t, d = p.tortie, p.daemon

        def cease1_count() -> int:
            return int(t.neighbor(v4(10))["messages"]["sent"].get("NOTIFICATION", 0))

        assert poll(lambda: cease1_count() >= 1, 60), "tortie sent no NOTIFICATION"
        first = time.monotonic()
        sent = str(t.neighbor(v4(10))["last_notification_sent"])
        assert "Cease" in sent and ("prefix" in sent.lower()), sent
        said: list[str] = []

        def daemon_says() -> bool:
            said[:] = [ln.strip() for ln in daemon_shows(d, v4(1)).splitlines() if REASON.search(ln)]
            return bool(said)

        assert poll(daemon_says, 10), daemon_shows(d, v4(1))[-3000:]
        assert t.state(v4(10)) != "Established"
        # the back-off, then another try: OpenSent again in tortie's log, and Cease/1 again
        opensent_before = len(re.findall(r"peer 10\.77\.0\.10: \w+ -> OPENSENT", t.log.read_text()))
        assert poll(lambda: len(re.findall(r"peer 10\.77\.0\.10: \w+ -> OPENSENT", t.log.read_text()))
                    > opensent_before, 45), "tortie did not try again within 45 s"
        retried = time.monotonic() - first
        assert retried >= 20, f"tortie tried again after {retried:.1f} s, before its back-off"
        print(f"{kind}: retry after {retried:.1f} s; the daemon says: {said[-1]}")
