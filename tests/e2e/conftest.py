"""One run of the article's story for the whole e2e tier: the lab cluster (dual stack) with
tortie-bgpd and tortie-felixd on every host, every step this kernel can do, in namespaces with a
prefix of their own. The story tests assert on it; the report test renders its report."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import article
from lab.cluster import Lab
from lab.netns import run
from lab.results import Run, StepResult
from lab.story import Story, kernel_has_ipip
from lab.topology import SEED_CLUSTER
from tests.conftest import require_root, require_tools


@dataclass
class StoryRun:
    lab: Lab
    story: Story
    run: Run
    lines: list[str]
    ipip_here: bool

    def step(self, key: str) -> StepResult:
        for r in self.run.steps:
            if r.key == key:
                return r
        pytest.skip(f"step {key} did not run here: this kernel has no IP-in-IP; the VM tier runs it "
                    "(tests/vm/inside/test_lab_ipip.py)")


@pytest.fixture(scope="session")
def story_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoryRun]:
    require_root()
    require_tools("ip", "nft", "curl", "tcpdump")
    ipip = kernel_has_ipip()
    lab = Lab(Path(tmp_path_factory.mktemp("lab")), prefix=f"te{secrets.token_hex(2)}-")
    lines: list[str] = []
    story = Story(lab, say=lines.append)
    try:
        story.up(SEED_CLUSTER, time_first_step=ipip)
        keys = [s.key for s in article.STEPS if ipip or not s.needs_ipip]
        result = story.run(keys)
        yield StoryRun(lab, story, result, lines, ipip)
    finally:
        story.close()
        names = set((lab.topology.state.namespaces if lab.topology else {}).values())
        lab.down()
        listed = run(["ip", "netns", "list"]).stdout.split()
        leftovers = [n for n in names if n in listed]
        assert not leftovers, f"lab left namespaces behind: {leftovers}"
