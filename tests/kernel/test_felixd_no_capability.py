"""tortie-felixd without CAP_NET_ADMIN (as under systemd-nspawn joined to a namespace without
--capability=CAP_NET_ADMIN): one clear error line naming the device, the errno and where the
capability went missing, exit 77 (which the unit does not retry), no traceback. Root only."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.netns import NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.test_felixd_daemon import BIN, cluster


def test_missing_capability_is_one_clear_line(tmp_path: Path) -> None:
    require_root()
    require_tools("ip", "setpriv")
    config = tmp_path / "cluster.yaml"
    config.write_text(cluster("vxlan"))
    nss = NetnsSet(prefix="tncap")
    try:
        ns = nss.add("w1")
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        ns.ip("addr", "add", "10.30.0.206/24", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        # root, but with CAP_NET_ADMIN gone from the bounding set, as a container that withholds it
        proc = subprocess.run(["ip", "netns", "exec", ns.name, "setpriv", "--bounding-set=-net_admin",
                               "--inh-caps=-net_admin", str(BIN / "tortie-felixd"), "--config", str(config),
                               "--node", "worker-1", "--run-dir", str(tmp_path / "run"), "--log-format", "text",
                               "--metrics-port", "0"],
                              capture_output=True, text=True, timeout=60)
    finally:
        nss.close()
    assert proc.returncode == 77, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    line = errors[0]
    assert "creating vxlan.calico" in line and "EPERM" in line and "bounding set" in line, line
