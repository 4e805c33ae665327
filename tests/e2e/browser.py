"""Headless Chromium (Debian's `chromium`) for the report test: a page's layout and a screenshot.

Chromium runs inside a fresh network namespace that has only a loopback interface, with every
background service switched off and a profile directory of its own, so nothing it does can reach a
network. Two runs over the same page at the same window size: one with a script added that writes
the page's height and the rectangles of the grid cells into the DOM (read back with --dump-dom),
one of the page as it is (--screenshot). The added script draws nothing, so both lay out alike.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab.netns import NetnsSet, run

CHROMIUM = "chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1")
WIDTH = 1280
MAX_HEIGHT = 16000  # Chromium's largest screenshot texture is 16384 pixels high
TIMEOUT = 120

LAYOUT_SCRIPT = """<script>
window.addEventListener('load', () => {
  const cells = [...document.querySelectorAll('td.cell')].map(td => {
    const r = td.getBoundingClientRect();
    return {step: td.closest('table').dataset.step, family: td.dataset.family, src: td.dataset.src,
            dst: td.dataset.dst, ok: td.dataset.ok || null,
            x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
  });
  const out = document.createElement('pre');
  out.id = 'layout'; out.hidden = true;
  out.textContent = JSON.stringify({height: document.documentElement.scrollHeight, cells});
  document.body.appendChild(out);
});
</script>"""


@dataclass(frozen=True)
class Cell:
    step: str
    family: str
    src: str
    dst: str
    ok: str | None  # "true", "false", or None when the pair was not probed
    x: float
    y: float
    w: float
    h: float


def available() -> str:
    """Why Chromium cannot run here ("" when it can)."""
    return "" if shutil.which(CHROMIUM) else "chromium is not installed (apt package chromium; scripts/setup.sh)"


def _chromium(nss: NetnsSet, profile: Path, *args: str) -> str:
    ns = nss.add("chr")
    proc = run(["ip", "netns", "exec", ns.name, CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
               check=False, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


def layout(page: Path, height: int = 2000) -> tuple[int, list[Cell]]:
    with tempfile.TemporaryDirectory(prefix="tortie-chromium-") as tmp, NetnsSet(prefix="tdb") as nss:
        probe = Path(tmp) / "layout.html"
        probe.write_text(page.read_text().replace("</body>", LAYOUT_SCRIPT + "</body>"))
        dom = _chromium(nss, Path(tmp) / "profile", f"--window-size={WIDTH},{height}", "--dump-dom",
                        probe.as_uri())
    found = re.search(r'<pre id="layout" hidden="">(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError(f"the layout script left nothing in the DOM: {dom[-500:]}")
    raw = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                     .replace("&gt;", ">"))
    return int(raw["height"]), [Cell(**c) for c in raw["cells"]]


def screenshot(page: Path, height: int, out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="tortie-chromium-") as tmp, NetnsSet(prefix="tdb") as nss:
        _chromium(nss, Path(tmp) / "profile", f"--window-size={WIDTH},{height}", f"--screenshot={out}",
                  page.as_uri())
    return out
