"""One self-contained HTML page of a run of the article's story: the topology, and per step the
pool's YAML, every host's routes, the pod matrix as a coloured grid, the switch times and the VXLAN
captures. Inline CSS and SVG only: the page fetches nothing, so it opens anywhere, offline.

The grid cells carry what they show as attributes (`data-family`, `data-src`, `data-dst`,
`data-ok`, `data-expected`) and are coloured only by `data-ok`, so a test can read a rendering back
and compare each cell with the run's results.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from html import escape
from pathlib import Path

from lab.article import PAIRS, STEPS, Pair
from lab.diagram import topology_svg
from lab.results import Run, StepResult
from lab.topology import Scenario

OK_COLOUR = "#1f9d55"  # a pair that worked
FAIL_COLOUR = "#d64541"  # a pair that did not
NA_COLOUR = "#e6e6e6"  # not probed

CSS = f"""
body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #111; max-width: 1200px; }}
h1 {{ font-size: 24px; margin-bottom: 4px; }}
h2 {{ font-size: 19px; margin-top: 34px; border-bottom: 2px solid #4a6fa5; padding-bottom: 3px; }}
h3 {{ font-size: 15px; margin: 14px 0 6px; }}
pre {{ background: #f6f8fa; border: 1px solid #d8dee4; padding: 8px; font-size: 12px; overflow-x: auto;
       margin: 4px 0; }}
table.summary {{ border-collapse: collapse; font-size: 13px; }}
table.summary td, table.summary th {{ border: 1px solid #bbb; padding: 4px 9px; text-align: left; }}
.status-ok {{ color: {OK_COLOUR}; font-weight: bold; }}
.status-WRONG {{ color: {FAIL_COLOUR}; font-weight: bold; }}
.status-skipped {{ color: #888; font-weight: bold; }}
.cols {{ display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }}
table.grid {{ border-collapse: separate; border-spacing: 3px; font-size: 12px; }}
table.grid th {{ font-weight: normal; padding: 2px 6px; }}
table.grid td.cell {{ width: 86px; height: 34px; text-align: center; color: #fff; font-weight: bold;
                      border-radius: 4px; }}
td.cell[data-ok="true"] {{ background: {OK_COLOUR}; }}
td.cell[data-ok="false"] {{ background: {FAIL_COLOUR}; }}
td.cell.na {{ background: {NA_COLOUR}; color: #999; font-weight: normal; }}
td.cell.unexpected {{ outline: 4px dashed #111; outline-offset: -4px; }}
.hosts {{ display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 10px; }}
.note {{ color: #555; font-size: 13px; }}
.times {{ font-size: 14px; }}
svg.topology {{ max-width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }}
"""


def _pair_cell(family: str, a: str, b: str, got: Mapping[Pair, bool], want: Mapping[Pair, bool]) -> str:
    if (a, b) not in got:
        return f'<td class="cell na" data-family="{family}" data-src="{a}" data-dst="{b}">{"—" if a == b else "·"}</td>'
    ok, expected = got[(a, b)], want.get((a, b), got[(a, b)])
    cls = "cell" + ("" if ok == expected else " unexpected")
    label = ("works" if ok else "fails") + ("" if expected else " (must fail)") if ok == expected else \
        ("works" if ok else "FAILS") + " ≠ article"
    return (f'<td class="{cls}" data-family="{family}" data-src="{a}" data-dst="{b}" data-ok="{str(ok).lower()}" '
            f'data-expected="{str(expected).lower()}" title="{a} → {b}">{escape(label)}</td>')


def grid(family: str, got: Mapping[Pair, bool], want: Mapping[Pair, bool], step_key: str) -> str:
    pods = sorted({p for pair in PAIRS for p in pair})
    head = "".join(f"<th>to {escape(p)}</th>" for p in pods)
    rows = []
    for a in pods:
        cells = "".join(_pair_cell(family, a, b, got, want) for b in pods)
        rows.append(f"<tr><th>from {escape(a)}</th>{cells}</tr>")
    return (f'<table class="grid" data-step="{escape(step_key)}" data-family="{family}">'
            f"<caption>{family} pod-to-pod HTTP</caption><tr><th></th>{head}</tr>{''.join(rows)}</table>")


def _times(r: StepResult) -> str:
    parts = []
    if r.skipped:
        return f'<p class="times">not run: {escape(r.skipped)}</p>'
    if r.route_problems:
        parts.append("kernel: <b>not</b> as the article says")
    elif r.pool_file is None and r.key != "1":
        parts.append("kernel: no pool change, routes unchanged")
    elif r.kernel_all is not None:
        per = ", ".join(f"{escape(h)} {s:.2f} s" for h, s in r.kernel_seconds.items())
        parts.append(f"every host's kernel held the new routes <b>{r.kernel_all:.2f} s</b> after "
                     f"{escape(r.since)} ({per})")
    if any(r.expected.values()):
        parts.append(f"every pair that must work worked <b>{r.matrix_seconds:.2f} s</b> after {escape(r.since)}"
                     if r.matrix_seconds is not None else "the pairs that must work did <b>not</b> all work")
    fails = sum(1 for v in r.expected.values() if not v)
    if fails:
        parts.append(f"{fails} pair{'s' if fails > 1 else ''} that must fail: one fixed {r.fail_probe:.1f} s "
                     "probe each, not timed")
    return '<p class="times">' + "<br>".join(parts) + "</p>"


def _where(r: StepResult, run: Run) -> str:
    if r.where == "vm":
        vm = run.vm
        return (f"in a QEMU VM on Debian's kernel {escape(str(vm.get('kernel', '')))} "
                f"({escape(str(vm.get('accel', '')))})")
    return f"in network namespaces on this host (kernel {escape(run.kernel)})"


def step_section(r: StepResult, run: Run) -> str:
    out = [f'<section class="step" id="step-{escape(r.key)}"><h2>{escape(r.name)} '
           f'<span class="status-{r.status}">{r.status}</span></h2>']
    spec = next((s for s in STEPS if s.key == r.key), None)
    if spec is not None:
        out.append(f"<p>{escape(spec.intro)}</p>")
    out.append(f'<p class="note">Ran {_where(r, run)}; cloud source/destination check on subnet 1: '
               f"{'on' if r.srcdst else 'off'}.</p>")
    if r.skipped:
        out.append(_times(r))
        out.append("</section>")
        return "\n".join(out)
    applied = f"tortiectl apply -f configs/{r.pool_file}" if r.pool_file else "the pool as it is (no apply)"
    out.append('<div class="cols"><div>')
    out.append(f"<h3>IPv4 pool: {escape(applied)}</h3><pre>{escape(r.pool_yaml)}</pre>")
    out.append(_times(r))
    out.append("</div><div>")
    out.append(grid("IPv4", r.matrix, r.expected, r.key))
    if r.expected6:
        out.append(grid("IPv6", r.matrix6, r.expected6, r.key))
    out.append("</div></div>")
    out.append("<h3>Routes tortie-felixd installed (protocol 80), per host</h3><div class=\"hosts\">")
    for host, routes in r.routes.items():
        problems = r.route_problems.get(host, [])
        extra = "".join(f"\n! {p}" for p in problems)
        out.append(f"<div><b>{escape(host)}</b><pre>{escape(routes or '(none)')}{escape(extra)}</pre></div>")
    out.append("</div>")
    for c in r.captures:
        out.append(f"<h3>VXLAN capture</h3><pre>{escape(chr(10).join(c.lines()))}</pre>")
    out.append("</section>")
    return "\n".join(out)


def summary_table(run: Run) -> str:
    rows = ["<tr><th>step</th><th>result</th><th>kernel: all hosts</th><th>pods: pairs that must work</th>"
            "<th>ran</th></tr>"]
    for r in run.steps:
        k = "" if r.skipped else ("—" if r.pool_file is None and r.key != "1" else
                                  (f"{r.kernel_all:.2f} s" if r.kernel_all is not None else "not reached"))
        m = "" if r.skipped or not any(r.expected.values()) else \
            (f"{r.matrix_seconds:.2f} s" if r.matrix_seconds is not None else "not reached")
        rows.append(f'<tr><td><a href="#step-{escape(r.key)}">{escape(r.name)}</a></td>'
                    f'<td class="status-{r.status}">{r.status}</td><td>{k}</td><td>{m}</td>'
                    f"<td>{'VM (Debian kernel)' if r.where == 'vm' else 'this host'}</td></tr>")
    if run.nat is not None:
        rows.append(f'<tr><td><a href="#nat">5. natOutgoing</a></td><td class="status-{"ok" if run.nat.ok else "WRONG"}">'
                    f'{"ok" if run.nat.ok else "WRONG"}</td><td></td><td></td><td>this host</td></tr>')
    if run.dual_stack is not None:
        ds = run.dual_stack
        rows.append(f'<tr><td><a href="#dual-stack">6. dual stack (IPv6)</a></td>'
                    f'<td class="status-{"ok" if ds.ok else "WRONG"}">{"ok" if ds.ok else "WRONG"}</td>'
                    "<td></td><td></td><td>this host</td></tr>")
    return f'<table class="summary">{"".join(rows)}</table>'


def render(run: Run, scenario: Scenario, blocks: Mapping[str, list[str]] | None = None,
           title: str = "tortie: the Calico routing article, run") -> str:
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="note">{when}; host kernel {escape(run.kernel)}; BGP mesh up {run.mesh_seconds:.1f} s after '
            "the daemons started. Times count from the switch (the apply, or the check being switched) until every"
            " host's kernel held the routes the article predicts, and until every pod pair that must work worked."
            "</p>"]
    if run.vm:
        vm = run.vm
        body.append(f'<p class="note">IP-in-IP steps: {escape(str(vm.get("why", "")))} They ran in a QEMU VM '
                    f"booted from Debian's kernel {escape(str(vm.get('kernel', '')))} ({escape(str(vm.get('accel', '')))}),"
                    f" {float(vm.get('seconds', 0)):.0f} s in all. {escape(str(vm.get('problem', '')))}</p>")
    body.append("<h2>Summary</h2>" + summary_table(run))
    if any(r.where == "vm" and not r.skipped for r in run.steps) and run.vm.get("accel") != "KVM":
        body.append('<p class="note">The VM\'s times are under software emulation (every process about ten '
                    "times slower): not comparable with this host's.</p>")
    body.append("<h2>Topology</h2>" + topology_svg(scenario, dict(blocks or {})))
    if run.node_status:
        body.append(f"<h3>tortiectl node status (on master)</h3><pre>{escape(run.node_status)}</pre>")
    for r in run.steps:
        body.append(step_section(r, run))
    if run.nat is not None:
        n = run.nat
        body.append(f'<section id="nat"><h2>5. natOutgoing <span class="status-{"ok" if n.ok else "WRONG"}">'
                    f'{"ok" if n.ok else "WRONG"}</span></h2><p>{escape(n.source)} → {escape(n.target)} (outside '
                    f"every pool): the external host saw the source <b>{escape(n.seen or 'nothing')}</b>; worker-1 is "
                    f"{escape(n.node_ip)}, so the pod's address was masqueraded by the nftables table "
                    "<code>tortie</code>.</p></section>")
    if run.dual_stack is not None:
        ds = run.dual_stack
        sessions = ", ".join(f"{escape(a)} {escape(s)}" for a, s in ds.sessions.items()) or "none"
        problems = "".join(f"<li>{escape(h)}: {escape(p)}</li>" for h, ps in ds.route_problems.items() for p in ps)
        body.append(f'<section id="dual-stack"><h2>6. Dual stack: IPv6 beside IPv4 '
                    f'<span class="status-{"ok" if ds.ok else "WRONG"}">{"ok" if ds.ok else "WRONG"}</span></h2>'
                    f"<p>IPv6 BGP sessions on master: {sessions}. The IPv6 pool uses VXLAN (no IP-in-IP on IPv6).</p>"
                    f"<h3>ip -6 route show proto 80 (on worker-1)</h3><pre>{escape(ds.routes)}</pre>"
                    f"{'<ul>' + problems + '</ul>' if problems else ''}"
                    f"{grid('IPv6', ds.matrix, ds.expected, 'dual-stack')}</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) +
            "\n</body></html>\n")


def write(path: Path, run: Run, scenario: Scenario, blocks: Mapping[str, list[str]] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(run, scenario, blocks))
    tmp.replace(path)
    return path
