"""The hosts tier shares one cluster: the .deb built once, the four hosts booted once (session scope),
the package installed and the units started by the first module (test_10_install.py); later modules
run in file order on that cluster and leave it converged for the next."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tools
from tests.hosts import cluster as C

TOOLS = ("systemd-nspawn", "mmdebstrap", "nsenter", "dpkg-buildpackage", "dh_virtualenv", "dpkg-deb", "ping")
REPORT = Path(os.environ.get("TORTIE_HOSTS_REPORT", Path(__file__).resolve().parents[2] / "build" / "hosts-report.json"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # one cluster, used in order: file order, then definition order within each file
    items.sort(key=lambda item: (str(item.path), item.location[1] or 0))


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[C.HostsCluster]:
    require_root()
    require_tools(*TOOLS)
    if not Path("/sys/fs/cgroup").exists():
        pytest.skip("no cgroup file system: systemd cannot run as PID 1 in a container here")
    t0 = time.monotonic()
    cluster = C.up(tmp_path_factory.mktemp("hosts"))
    cluster.notes["setup_seconds"] = round(time.monotonic() - t0, 1)
    try:
        yield cluster
    finally:
        try:
            REPORT.parent.mkdir(parents=True, exist_ok=True)
            REPORT.write_text(json.dumps(cluster.notes, indent=2, sort_keys=True) + "\n")
        finally:
            C.down(cluster)


@pytest.fixture(scope="session")
def installed(hosts: C.HostsCluster) -> C.HostsCluster:
    """The package installed and both units running on every host (test_10_install does it and checks
    it; a module run on its own gets it done here)."""
    if not hosts.notes.get("installed"):
        C.install_everywhere(hosts)
    return hosts
