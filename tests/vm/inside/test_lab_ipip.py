"""The article's IP-in-IP steps end to end, on a kernel that has IP-in-IP: the whole lab (four hosts
running tortie-bgpd and tortie-felixd, three pods, the fabric with its cloud check) in the VM.

Step 1: the seed pool (ipipMode Always): every pod reaches every pod through tunl0, even with the
source/destination check on. Step 3: ipipMode CrossSubnet: direct inside subnet 1, tunl0 to worker-3.
The other steps run on the host's kernel in tests/e2e.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cluster import Lab
from lab.story import BLOCK_W2, BLOCK_W3, PAIRS, Story
from lab.topology import SEED_CLUSTER
from tests.vm.inside.ipip_support import load_ipip

ALL_OK = dict.fromkeys(PAIRS, True)
# Eight daemons, four servers and the fabric under software emulation: bringing the lab up alone can
# take several minutes on a busy 2-core host, far over the tier's per-test default.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    load_ipip()
    lab = Lab(Path(tmp_path_factory.mktemp("lab")), prefix=f"tv{secrets.token_hex(2)}-")
    try:
        lab.up(SEED_CLUSTER)
        s = Story(lab)
        s.wait_mesh(deadline=600)
        yield s
    finally:
        lab.down()


def test_ipip_always_every_pod_reaches_every_pod(story: Story) -> None:
    assert story.ipip_supported()
    r = story.step("1. IP-in-IP Always", None, True, ALL_OK, "")
    assert r.ok, (r.matrix, r.routes)
    assert r.routes[BLOCK_W2].startswith(f"{BLOCK_W2} via 10.30.0.56 dev tunl0 proto 80 onlink")
    assert r.routes[BLOCK_W3].startswith(f"{BLOCK_W3} via 10.30.1.66 dev tunl0 proto 80 onlink")


def test_ipip_cross_subnet(story: Story) -> None:
    r = story.step("3. ipipMode: CrossSubnet", "ippool-crosssubnet.yaml", False, ALL_OK, "")
    assert r.ok, (r.matrix, r.routes)
    assert r.routes[BLOCK_W2].startswith(f"{BLOCK_W2} via 10.30.0.56 dev eth0 proto 80")
    assert r.routes[BLOCK_W3].startswith(f"{BLOCK_W3} via 10.30.1.66 dev tunl0 proto 80 onlink")
