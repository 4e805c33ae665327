"""Helpers for the soak tier: memory samples, their trend, and errors in the daemons' JSON logs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (units of y per unit of x); 0 for fewer than two points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def daemon_errors(log: Path) -> list[str]:
    """Lines of a daemon's log (--log-format json) at error level or above, and anything that is not
    a JSON log line (a traceback printed past the logger, an interpreter crash)."""
    bad = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(doc, dict) or doc.get("level") in ("error", "critical") or "exc" in doc:
            bad.append(line)
    return bad
