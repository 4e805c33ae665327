"""Watches the kernel for changes that can make felixd's state wrong: links going down or up,
addresses changing, and routes changing (someone deleting or replacing a felixd route, or a host
route that a next hop resolves through). Each event only asks for a resync; the reconciler works out
what, if anything, to repair. Our own writes come back as events too: the resync they cause finds
nothing to do, so it ends there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)

log = logging.getLogger("tortie.felix.monitor")

GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
KIND = {"RTM_NEWLINK": "link", "RTM_DELLINK": "link", "RTM_NEWADDR": "address", "RTM_DELADDR": "address",
        "RTM_NEWROUTE": "route", "RTM_DELROUTE": "route"}


def relevant(msg: dict[str, object]) -> str | None:
    """What kind of change an rtnetlink message is, or None when it cannot matter to felixd."""
    kind = KIND.get(str(msg.get("event")))
    if kind == "route":
        table = msg.get("table")
        # local/broadcast entries and other tables do not route pods
        if table not in (None, 254) or msg.get("type") not in (1, 6):  # unicast, blackhole
            return None
    return kind


class KernelMonitor:
    def __init__(self, netns: str | None, on_change: Callable[[str], None], debounce: float = 0.2) -> None:
        self.netns = netns
        self.on_change = on_change
        self.debounce = debounce
        self._task: asyncio.Task[None] | None = None
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _note(self, kind: str) -> None:
        self._pending.add(kind)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.debounce, self._fire)

    def _fire(self) -> None:
        self._timer = None
        kinds, self._pending = self._pending, set()
        self.on_change(",".join(sorted(kinds)))

    async def _run(self) -> None:
        while True:
            ipr = AsyncIPRoute(netns=self.netns, flags=0) if self.netns else AsyncIPRoute()
            try:
                await ipr.bind(groups=GROUPS)
                async for msg in ipr.get():
                    kind = relevant(msg)
                    if kind is not None:
                        self._note(kind)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. ENOBUFS after a burst: we may have missed events
                log.info("netlink monitor restarting after %s; resyncing", exc)
                self._note("overflow")
            finally:
                ipr.close()
            await asyncio.sleep(0.5)
