"""Plots of the scale results (time, memory and CPU against N, tortie beside BIRD), PNG and SVG.

Drawn from bench/results/scale.json only, so a plot always shows what a results file holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MB = 1_000_000
STYLE = {"tortie": ("tab:orange", "o", "tortie-bgpd"), "tortie_felixd": ("tab:red", "s", "tortie-bgpd + felixd"),
         "bird": ("tab:blue", "^", "BIRD 2")}


def _series(part: dict[str, Any], kind: str, get: Any) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for n, entry in sorted(part.items(), key=lambda kv: int(kv[0])):
        m = entry.get("median", {}).get(kind)
        if m is None:
            continue
        try:
            y = get(m)
        except (KeyError, TypeError):
            continue
        xs.append(int(n))
        ys.append(y)
    return xs, ys


def _caption(part: dict[str, Any]) -> str:
    runs = [e["run"] for e in part.values() if "run" in e and "median" in e]
    if not runs:
        return ""
    last = max(runs, key=lambda r: r.get("date", ""))
    commits = sorted({(r.get("commit") or "?")[:10] for r in runs})
    loads = [r.get("load_start", [0])[0] for r in runs]
    return (f"{last.get('machine', {}).get('cpus', '?')} cores; commit {', '.join(commits)}; last run {last.get('date', '?')}; "
            f"1-min load {min(loads):.1f}-{max(loads):.1f}")


def _figure(part: dict[str, Any], title: str, panels: list[tuple[str, str, dict[str, Any]]],
            out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 if len(panels) == 4 else len(panels)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows + 0.6), constrained_layout=True,
                             squeeze=False)
    for ax, (label, unit, lines) in zip(axes.flat, panels):
        for name, (kind, get, dashed) in lines.items():
            xs, ys = _series(part, kind, get)
            if not xs:
                continue
            color, marker, _ = STYLE[kind]
            ax.plot(xs, ys, marker=marker, color=color, linestyle="--" if dashed else "-", label=name)
        for kind in dict.fromkeys(kind for kind, _, _ in lines.values()):
            failed = [int(n) for n, e in part.items() if "failed" in e.get("median", {}).get(kind, {})]
            if failed:
                color, _, name = STYLE[kind]
                top = ax.get_ylim()[1]
                ax.plot(failed, [top] * len(failed), marker="x", markersize=10, color=color, linestyle="none",
                        clip_on=False, label=f"{name}: did not converge")
        ax.set_title(label)
        ax.set_xlabel("N")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(f"{title}\n{_caption(part)}", fontsize="medium")
    files = []
    for ext in ("png", "svg"):
        path = out.with_suffix(f".{ext}")
        fig.savefig(path, dpi=110, metadata={"Date": None} if ext == "svg" else {})
        files.append(path)
    plt.close(fig)
    return files


def scale_plots(data: dict[str, Any], outdir: Path) -> list[Path]:
    files: list[Path] = []
    rr = data.get("reflector", {})
    if any("median" in e for e in rr.values()):
        lines = {k: STYLE[k][2] for k in ("tortie", "bird")}
        files += _figure(rr, "Route reflector with N clients (played by BIRD 2 processes, one per 500 clients)", [
            ("reflector start -> every client holds N", "seconds",
             {lines[k]: (k, lambda m: m["seconds"], False) for k in lines}),
            ("reflector peak RSS", "MB", {lines[k]: (k, lambda m: m["peak_rss_bytes"] / MB, False) for k in lines}),
            ("reflector CPU", "CPU seconds", {lines[k]: (k, lambda m: m["cpu_seconds"], False) for k in lines}),
        ], outdir / "scale-reflector")
    mesh = data.get("mesh", {})
    if any("median" in e for e in mesh.values()):
        files += _figure(mesh, "Full mesh of N speakers (one namespace each)", [
            ("start -> every node holds N-1 blocks", "seconds", {
                "tortie-bgpd (RIB)": ("tortie", lambda m: m["rib_seconds"], False),
                "bgpd + felixd (kernel)": ("tortie_felixd", lambda m: m["kernel_seconds"], False),
                "BIRD 2 (kernel)": ("bird", lambda m: m["kernel_seconds"], False),
                "BIRD 2 (RIB)": ("bird", lambda m: m["rib_seconds"], True)}),
            ("peak RSS per speaker (max)", "MB", {
                STYLE[k][2]: (k, lambda m: m["peak_rss_bytes_per_speaker"]["max"] / MB, False) for k in STYLE}),
            ("CPU, all speakers, start -> converged", "CPU seconds", {
                STYLE[k][2]: (k, lambda m: m["cpu_seconds"], False) for k in STYLE}),
            ("one new block -> every node", "seconds", {
                STYLE[k][2]: (k, lambda m: m["new_block_seconds"], False) for k in STYLE}),
        ], outdir / "scale-mesh")
    return files
