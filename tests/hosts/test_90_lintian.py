"""lintian on the .deb the tier installed, with the overrides debian/tortie.lintian-overrides explains.
Last in the tier: lintian runs beside everything else from the moment the .deb is built (C.up)."""

from __future__ import annotations

from tests.conftest import require_tools
from tests.hosts import cluster as C


def test_deb_is_lintian_clean(hosts: C.HostsCluster) -> None:
    require_tools("lintian")
    assert hosts.lintian is not None  # started beside the boot (C.up)
    out, _ = hosts.lintian.communicate(timeout=600)
    tags = [line for line in out.splitlines() if line[:2] in ("E:", "W:")]
    assert hosts.lintian.returncode == 0 and not tags, out
