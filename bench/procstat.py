"""Memory and CPU of a running process, from /proc (no process spawned)."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) and of its reaped children."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17
    return sum(int(f) for f in fields[11:15]) / _TICK


class Usage:
    """CPU seconds of a set of processes since a starting point, and their peak RSS."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {k: cpu_seconds(p) for k, p in pids.items()}

    def cpu(self) -> dict[str, float]:
        return {k: round(cpu_seconds(p) - self.start[k], 3) for k, p in self.pids.items()}

    def peak_rss(self) -> dict[str, int]:
        return {k: memory(p)["VmHWM"] for k, p in self.pids.items()}
