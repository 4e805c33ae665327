"""The systemd units: `systemd-analyze verify` accepts them verbatim, and they hold what operations need."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tools

ROOT = Path(__file__).resolve().parents[2]
UNITS = ["tortie-bgpd.service", "tortie-felixd.service"]


def fake_root(tmp: Path) -> Path:
    """A root with the system's units and our executables where the package puts them."""
    (tmp / "usr/bin").mkdir(parents=True)
    (tmp / "etc/systemd/system").mkdir(parents=True)
    (tmp / "bin").mkdir()
    shutil.copytree("/lib/systemd/system", tmp / "lib/systemd/system", symlinks=True)
    shutil.copy("/bin/kill", tmp / "bin/kill")
    for exe in ("tortie-bgpd", "tortie-felixd"):
        target = tmp / "usr/bin" / exe
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
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", *UNITS],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # Unknown keys are only warnings for systemd: treat any remark about our units as a failure. The
    # man pages come with the package (debian/*.8), not with this checkout: --man=no.
    remarks = [line for line in (proc.stdout + proc.stderr).splitlines() if "tortie" in line]
    assert remarks == []


def load(unit: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd allows a key more than once)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in (ROOT / "systemd" / unit).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, value = line.split("=", 1)
        out.setdefault(section, {}).setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize(("unit", "caps"), [("tortie-bgpd.service", "CAP_NET_BIND_SERVICE"),
                                            ("tortie-felixd.service", "CAP_NET_ADMIN")])
def test_unit_contract(unit: str, caps: str) -> None:
    parsed = load(unit)
    svc = {k: v[-1] for k, v in parsed["Service"].items()}
    assert svc["Type"] == "notify"
    assert int(svc["WatchdogSec"]) > 0
    assert svc["Restart"] == "on-failure"
    assert svc["RestartPreventExitStatus"] == "77 78"  # not retried: a missing capability, an invalid configuration
    assert "HUP" in svc["ExecReload"]
    assert svc["ExecStart"].startswith("/usr/bin/tortie-")
    assert svc["RuntimeDirectory"] == "tortie" and svc["RuntimeDirectoryPreserve"] == "yes"
    assert svc["CapabilityBoundingSet"] == caps and svc["AmbientCapabilities"] == caps
    assert svc["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]
    assert parsed["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictNamespaces"):
        assert svc[key] == "yes"
    assert svc["ProtectSystem"] == "strict"
    assert svc["User"] == "tortie"
    unit_section = {k: v[-1] for k, v in parsed["Unit"].items()}
    assert unit_section["ConditionPathExists"] == "/etc/tortie/cluster.yaml"
    assert int(unit_section["StartLimitBurst"]) >= 1
