"""The systemd units: `systemd-analyze verify` accepts them verbatim, and they hold what operations need."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tools

ROOT = Path(__file__).resolve().parents[2]
UNITS = ["tortie-bgpd.service", "tortie-felixd.service"]


def fake_root(tmp: Path) -> Path:
    """A root with the system's units and our executables where the units expect them."""
    (tmp / "opt/tortie/venv/bin").mkdir(parents=True)
    (tmp / "etc/systemd/system").mkdir(parents=True)
    (tmp / "bin").mkdir()
    shutil.copytree("/lib/systemd/system", tmp / "lib/systemd/system", symlinks=True)
    shutil.copy("/bin/kill", tmp / "bin/kill")
    for exe in ("tortie-bgpd", "tortie-felixd"):
        target = tmp / "opt/tortie/venv/bin" / exe
        target.write_text("#!/bin/sh\n")
        target.chmod(0o755)
    for unit in UNITS:
        shutil.copy(ROOT / "systemd" / unit, tmp / "etc/systemd/system" / unit)
    return tmp


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    require_tools("systemd-analyze")
    if not Path("/lib/systemd/system/sysinit.target").exists():
        pytest.skip("systemd's own units are not installed")
    root = fake_root(tmp_path)
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *UNITS],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # Unknown keys are only warnings for systemd: treat any remark about our units as a failure.
    remarks = [line for line in (proc.stdout + proc.stderr).splitlines() if "tortie" in line]
    assert remarks == []


def load(unit: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(ROOT / "systemd" / unit)
    return cp


@pytest.mark.parametrize(("unit", "caps"), [("tortie-bgpd.service", "CAP_NET_BIND_SERVICE"),
                                            ("tortie-felixd.service", "CAP_NET_ADMIN")])
def test_unit_contract(unit: str, caps: str) -> None:
    svc = load(unit)["Service"]
    assert svc["Type"] == "notify"
    assert int(svc["WatchdogSec"]) > 0
    assert svc["Restart"] == "on-failure"
    assert "HUP" in svc["ExecReload"]
    assert svc["RuntimeDirectory"] == "tortie" and svc["ConfigurationDirectory"] == "tortie"
    assert svc["CapabilityBoundingSet"] == caps and svc["AmbientCapabilities"] == caps
    assert svc["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]
    assert svc["SystemCallFilter"] == "@system-service"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert svc[key] == "yes"
    assert svc["ProtectSystem"] == "strict"
    assert svc["User"] == "tortie"
