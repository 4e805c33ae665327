"""The demo's HTML report of this tier's run, rendered by headless Chromium: self-contained, and
every pod-matrix cell in the screenshot has the colour of what the run found for that pair."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab import report
from lab.report import FAIL_COLOUR, NA_COLOUR, OK_COLOUR
from lab.topology import SEED_CLUSTER, seed_scenario
from proto.resources import load_model
from tests.e2e import browser
from tests.e2e.conftest import StoryRun

pytestmark = pytest.mark.timeout(600)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def _close(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


@pytest.fixture(scope="module")
def page(story_run: StoryRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = load_model(SEED_CLUSTER.read_text(), str(SEED_CLUSTER))
    blocks = {n.name: [str(b.cidr) for b in model.blocks_for(n)] for n in model.nodes}
    return report.write(tmp_path_factory.mktemp("report") / "report.html", story_run.run, seed_scenario(), blocks)


def test_report_is_self_contained(page: Path) -> None:
    html = page.read_text()
    # nothing to fetch: no external scripts, styles, images, fonts or frames
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html, re.I)
    assert not re.search(r"@import|url\(|<link\b|<script\b|<iframe\b|<img\b", html, re.I)
    assert "<svg" in html and "cloud source/destination check" in html and "gateway" in html


def test_report_has_every_step_with_pool_routes_grid_and_times(page: Path, story_run: StoryRun) -> None:
    html = page.read_text()
    for r in story_run.run.steps:
        section = html[html.index(f'id="step-{r.key}"'):]
        section = section[:section.index("</section>")]
        if r.pool_file:
            assert f"configs/{r.pool_file}" in section and "kind: IPPool" in section
        for host in ("master", "worker-1", "worker-2", "worker-3"):
            assert f"<b>{host}</b>" in section
        assert f'data-step="{r.key}" data-family="IPv4"' in section
        assert f'data-step="{r.key}" data-family="IPv6"' in section
        if r.pool_file:
            assert f"{r.kernel_all:.2f} s" in section
    assert "VNI 4096" in html


def test_chromium_renders_the_grid_as_the_run_found_it(page: Path, story_run: StoryRun,
                                                         tmp_path: Path) -> None:
    why = browser.available()
    if why:
        pytest.skip(why)
    from PIL import Image

    height, cells = browser.layout(page)
    assert cells, "no grid cells laid out"
    height = min(height, browser.MAX_HEIGHT)
    shot = browser.screenshot(page, height, tmp_path / "report.png")
    img = Image.open(shot).convert("RGB")
    assert img.size[0] == browser.WIDTH
    results = {r.key: r for r in story_run.run.steps}
    checked = 0
    for c in cells:
        cx, cy = int(c.x + 7), int(c.y + 7)  # inside the rounded corner, clear of the label
        if cy >= img.size[1]:
            continue
        colour = img.getpixel((cx, cy))
        if c.step == "dual-stack":
            ds = story_run.run.dual_stack
            assert ds is not None
            found = ds.matrix.get((c.src, c.dst))
        else:
            r = results[c.step]
            found = (r.matrix if c.family == "IPv4" else r.matrix6).get((c.src, c.dst))
        if found is None:
            assert c.ok is None and _close(colour, _rgb(NA_COLOUR)), (c, colour)
            continue
        want = OK_COLOUR if found else FAIL_COLOUR
        assert _close(colour, _rgb(want)), f"{c.step} {c.family} {c.src}->{c.dst}: ran {found}, shows {colour}"
        checked += 1
    probed = sum(len(r.matrix) + len(r.matrix6) for r in story_run.run.steps) + \
        (len(story_run.run.dual_stack.matrix) if story_run.run.dual_stack else 0)
    assert checked == probed, f"checked {checked} of {probed} cells (page {height} px high)"
    # a failing cell exists in the run (step 2a), so red is really drawn
    assert any(not ok for r in story_run.run.steps for ok in r.matrix.values())
