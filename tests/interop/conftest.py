"""Interop tier fixtures (one namespace segment per module) and the results recorder.

Every scenario test carries `@pytest.mark.interop("scenario name")` and a `kind` parameter (the
daemon); the outcome of each is recorded and, at the end of the run, written with the run's date and
commit to build/interop/results.json (TORTIE_INTEROP_RESULTS to change). docs/interop.md is not
touched by a test run: `make interop-table` runs the whole tier once and renders the table from that
run's file (scripts/interop_table.py). Under pytest-xdist the workers' reports reach the controller,
which alone writes the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.interop.interop_support import Fabric

REPO = Path(__file__).resolve().parents[2]
_RESULTS: dict[tuple[str, str], dict[str, str]] = {}
PCAP = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interop(scenario): an interop scenario, recorded in docs/interop.md")


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    require_root()
    fab = Fabric.build(tmp_path_factory.mktemp("interop"))
    try:
        yield fab
    finally:
        fab.close()


@pytest.fixture
def work(fabric: Fabric, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory per test inside the module's work area, and a capture of the whole segment
    (the bridge) into it, summarised in the report of a failing test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "_")
    if len(name) > 24:
        # daemons keep Unix sockets under here, and a socket path has at most 107 octets
        name = f"{name[:17]}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
    d = fabric.work / name
    d.mkdir(parents=True, exist_ok=True)
    pcap = d / "bgp.pcap"
    dump = None
    if shutil.which("tcpdump") and fabric.switch is not None:
        dump = fabric.nsset.spawn(fabric.switch, "tcpdump", "-i", "br0", "-U", "-s", "0", "-w", str(pcap),
                                  "tcp port 179", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        request.node.stash[PCAP] = pcap
    try:
        yield d
    finally:
        if dump is not None and dump.poll() is None:
            dump.terminate()
            dump.wait(timeout=10)


def packet_summary(pcap: Path, lines: int = 120) -> str:
    if not pcap.exists() or not shutil.which("tshark"):
        return f"(no capture: {pcap})"
    proc = subprocess.run(["tshark", "-r", str(pcap), "-Y", "bgp", "-T", "fields", "-e", "frame.time_relative",
                           "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "_ws.col.Info"],
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout.splitlines()
    head = f"{pcap} ({len(out)} frames with BGP; last {min(lines, len(out))} shown)"
    return "\n".join([head, *out[-lines:]])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed and PCAP in item.stash:
        report.sections.append(("BGP packets on the segment (tshark)", packet_summary(item.stash[PCAP])))
    marker = item.get_closest_marker("interop")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "kind" not in callspec.params:
        return
    scenario = str(marker.args[0])
    kind = str(callspec.params["kind"])
    status = ""
    reason = ""
    if report.when == "call":
        status = "pass" if report.passed else ("skip" if report.skipped else "FAIL")
    elif report.when == "setup" and not report.passed:
        status = "skip" if report.skipped else "ERROR"
    elif report.when == "teardown" and report.failed:
        status = "ERROR"
    if not status:
        return
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(report.longrepr)
        reason = " ".join(text.split("\n", 1)[0].split())[:200]
    report.user_properties.append(("interop", {"scenario": scenario, "daemon": kind, "status": status,
                                               "reason": reason, "test": item.nodeid}))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == "interop" and isinstance(value, dict):
            cell = (value["scenario"], value["daemon"])
            # a teardown error overrides the call's pass; a skip or pass never overrides a failure
            if _RESULTS.get(cell, {}).get("status") in ("FAIL", "ERROR") and value["status"] in ("pass", "skip"):
                continue
            _RESULTS[cell] = value


def _commit() -> str:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or not _RESULTS:
        return
    path = Path(os.environ.get("TORTIE_INTEROP_RESULTS", REPO / "build" / "interop" / "results.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    results = [dict(r, scenario=s, daemon=d) for (s, d), r in sorted(_RESULTS.items())]
    path.write_text(json.dumps({
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"), "commit": _commit(),
        "command": "pytest " + " ".join(session.config.invocation_params.args),
        "load": [round(x, 1) for x in os.getloadavg()], "results": results,
    }, indent=1))
