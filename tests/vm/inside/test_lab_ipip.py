"""The article's IP-in-IP steps end to end, on a kernel that has IP-in-IP: the whole lab (four hosts
running tortie-bgpd and tortie-felixd, three pods, the fabric with its cloud check) in the VM, run by
the same `lab.story` code as `make demo`'s VM part (scripts/vm/steps.py) and tests/e2e.

Step 1: the seed pool (ipipMode Always): every pod reaches every pod through tunl0, even with the
source/destination check on; its times count from the daemons' start. Step 3: ipipMode CrossSubnet:
direct inside subnet 1, tunl0 to worker-3, timed from the apply. The other steps run on the host's
kernel in tests/e2e.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cluster import Lab
from lab.results import Run, StepResult
from lab.story import Story
from scripts.vm.steps import IPIP_KEYS, SLOW_IN_VM
from tests.vm.inside.ipip_support import load_ipip

BLOCK_W2, BLOCK_W3 = "192.168.133.192/26", "192.168.97.192/26"
HOSTS = {"master", "worker-1", "worker-2", "worker-3"}
# Eight daemons, four servers and the fabric under software emulation: bringing the lab up alone can
# take several minutes on a busy 2-core host, far over the tier's per-test default.
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def ipip_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    load_ipip()
    lab = Lab(Path(tmp_path_factory.mktemp("lab")), prefix=f"tv{secrets.token_hex(2)}-")
    story = Story(lab, say=print, slow=SLOW_IN_VM, where="vm")
    try:
        story.up(time_first_step=True)
        yield story.run(list(IPIP_KEYS), nat=False, mesh=False, dual=False)
    finally:
        story.close()
        lab.down()


def explain(r: StepResult) -> str:
    return (f"{r.name}: matrix {r.matrix}, kernel {r.kernel_seconds}, pods {r.matrix_seconds}, "
            f"problems {r.route_problems}, worker-1:\n{r.routes.get('worker-1')}")


def test_ipip_always_every_pod_reaches_every_pod(ipip_run: Run) -> None:
    r = ipip_run.step("1")
    assert r.ok, explain(r)
    assert r.route_line("worker-1", BLOCK_W2).startswith(f"{BLOCK_W2} via 10.30.0.56 dev tunl0 proto 80 onlink")
    assert r.route_line("worker-1", BLOCK_W3).startswith(f"{BLOCK_W3} via 10.30.1.66 dev tunl0 proto 80 onlink")
    assert r.since == "the daemons' start" and set(r.kernel_seconds) == HOSTS, explain(r)


def test_ipip_cross_subnet(ipip_run: Run) -> None:
    r = ipip_run.step("3")
    assert r.ok, explain(r)
    assert r.route_line("worker-1", BLOCK_W2).startswith(f"{BLOCK_W2} via 10.30.0.56 dev eth0 proto 80")
    assert r.route_line("worker-1", BLOCK_W3).startswith(f"{BLOCK_W3} via 10.30.1.66 dev tunl0 proto 80 onlink")
    assert r.since == "the apply wrote the pool" and r.kernel_all is not None, explain(r)
