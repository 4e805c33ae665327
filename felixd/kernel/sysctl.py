"""sysctls (proxy_arp, forwarding) in felixd's namespace.

Files under /proc/sys/net resolve to the network namespace of the thread that opens them, so the
namespace worker reads and writes them directly: no `ip netns exec sysctl` process per value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from felixd.kernel.netns import NetnsWorker
from felixd.state import Sysctl
from proto.record import record


@record(frozen=True, slots=True)
class SysctlError:
    path: str
    reason: str


def _path(name: str) -> str:
    rel = name.replace(".", "/") if "/" not in name else name
    if ".." in rel.split("/") or not rel.startswith("net/"):
        raise ValueError(f"felixd only sets net/ sysctls: {name}")
    return os.path.join("/proc/sys", rel)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _apply(wanted: list[Sysctl]) -> tuple[int, list[SysctlError]]:
    changes = 0
    errors: list[SysctlError] = []
    for s in wanted:
        try:
            path = _path(s.path)
            if _read(path) != s.value:
                with open(path, "w") as f:
                    f.write(s.value)
                changes += 1
        except (OSError, ValueError) as exc:
            errors.append(SysctlError(s.path, str(exc)))
    return changes, errors


class Sysctls:
    def __init__(self, worker: NetnsWorker) -> None:
        self.worker = worker

    async def sync(self, wanted: Iterable[Sysctl]) -> tuple[int, list[SysctlError]]:
        """Set each sysctl that differs; a missing interface's entry is an error, not a stop."""
        return await self.worker.acall(_apply, sorted(wanted, key=lambda s: s.path))

    def read(self, name: str) -> str:
        return self.worker.call(_read, _path(name))
