"""What every results file records about its run, and how results are merged into bench/results/.

Each entry carries `run`: the date, the commit (and whether the work tree had uncommitted changes),
the machine (CPU, cores, memory, kernel, Python, load average at start and end) and the exact
command, so a number can always be traced to the code and the conditions that produced it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    """git's output, or "" when git cannot say; not stripped (porcelain lines start with a space)."""
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Run:
    """The record of one benchmark invocation; `finish()` adds the end time and load."""

    def __init__(self) -> None:
        self.started = datetime.datetime.now(datetime.UTC)
        self.load_start = load()
        # tracked files changed beside the commit; `dirty` when any of them is outside bench/ (the
        # code under measurement differs from the commit, not just the measuring scripts)
        changed = [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()
                   if "bench/results/" not in line]
        self.info: dict[str, Any] = {
            "date": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": _git("rev-parse", "HEAD").strip() or None,
            "branch": _git("rev-parse", "--abbrev-ref", "HEAD").strip() or None,
            "dirty": any(not path.startswith("bench/") for path in changed),
            "changed_files": changed,
            "command": shlex.join(sys.orig_argv),
            "cwd": os.getcwd(),
            "machine": {
                "hostname": socket.gethostname(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
                "memory_bytes": _memory_bytes(), "kernel": platform.release(),
                "python": platform.python_version(),
            },
            "load_start": self.load_start,
        }

    def finish(self) -> dict[str, Any]:
        self.info["load_end"] = load()
        self.info["seconds"] = round((datetime.datetime.now(datetime.UTC) - self.started).total_seconds(), 1)
        return dict(self.info)


def merge(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Store `entry` under `key` in the JSON object at `path`, keeping the other keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[key] = entry
    path.write_text(json.dumps(existing, indent=2) + "\n")
