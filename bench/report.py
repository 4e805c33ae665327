"""Rewrite bench/README.md's result tables from the files in bench/results/ (no hand-copied numbers).

    .venv/bin/python bench/report.py            # rewrite the tables between the markers, redraw the plots
    .venv/bin/python bench/report.py --check    # exit 1 when README.md is not what the results say

Each generated block sits between `<!-- report:NAME -->` and `<!-- /report:NAME -->`. Every row says
which run produced it (date, commit, 1-minute load at the start) and the exact command; a field a
results file does not hold is shown as "not recorded" rather than guessed. The targets table lists
every target of the open issues with the measured value and says plainly when it is missed or has
not been measured.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
MB = 1_000_000
NR = "not recorded"

Target = dict[str, Any]  # benchmark, target, value (text), met (True / False / None: not measured), run


# ---------------------------------------------------------------- reading


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    if not path.exists():
        return None
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def run_info(entry: dict[str, Any]) -> dict[str, Any]:
    """date, commit, command, machine and load of an entry, from `run` (bench/results.py) or the older
    top-level fields; absent fields come back as None."""
    run = entry.get("run") if isinstance(entry.get("run"), dict) else {}
    machine = run.get("machine") or entry.get("machine") or {}
    date = run.get("date") or entry.get("date") or entry.get("when") or machine.get("when")
    return {"date": date, "commit": run.get("commit") or entry.get("commit"),
            "dirty": run.get("dirty", entry.get("dirty")),
            "command": run.get("command") or entry.get("command"), "machine": machine or None,
            "load": (run.get("load_start") or entry.get("load_start") or entry.get("load")
                     or machine.get("load_1_5_15"))}


def run_cell(entry: dict[str, Any]) -> str:
    info = run_info(entry)
    date = (info["date"] or NR)[:16].replace("T", " ")
    commit = info["commit"][:10] + ("+" if info["dirty"] else "") if info["commit"] else f"commit {NR}"
    load = f"load {info['load'][0]:.1f}" if info["load"] else f"load {NR}"
    return f"{date}, {commit}, {load}"


def missing_fields(entry: dict[str, Any]) -> list[str]:
    info = run_info(entry)
    return [k for k in ("date", "commit", "command", "machine") if not info[k]]


def commands(entries: list[dict[str, Any]]) -> list[str]:
    lines = []
    for e in entries:
        info = run_info(e)
        lines.append(f"`{info['command']}`" if info["command"] else f"command {NR}")
    return list(dict.fromkeys(lines))


def num(value: Any, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
    if value is None:
        return NR
    try:
        return fmt.format(float(value) / scale)
    except (TypeError, ValueError):
        return str(value)


def dig(d: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "**not measured**"}[met]


def footer(entries: list[dict[str, Any]]) -> list[str]:
    out = ["", "Commands: " + "; ".join(commands(entries))]
    gaps = sorted({f for e in entries for f in missing_fields(e)})
    if gaps:
        out.append(f"Not recorded in some entries of this file: {', '.join(gaps)} (older runs).")
    return out


# ---------------------------------------------------------------- per benchmark


def datapath(targets: list[Target]) -> list[str]:
    data = load("datapath.json")
    want = {"100000": ["kernel time <= 1.5x BIRD", "bgpd + felixd peak RSS <= 120 MB"],
            "1000000": ["kernel time <= 2x BIRD", "bgpd peak RSS <= 250 B per route"]}
    for key, names in want.items():
        entry = (data or {}).get(key)
        got = {t["target"]: t for t in (entry or {}).get("targets", [])}
        for name in names:
            t = got.get(name)
            targets.append({"benchmark": f"datapath {int(key):,} routes", "target": name,
                            "value": num(t["value"], "{}") if t else "-", "met": t["met"] if t else None,
                            "run": run_cell(entry) if entry else "-"})
    if not data:
        return ["No results yet: run `bench/datapath.py`."]
    rows = []
    entries = [data[k] for k in sorted(data, key=int)]
    for e in entries:
        k, h, cpu, rss = (e["median_kernel_seconds"], e["median_held_seconds"], e["median_cpu_seconds"],
                          e["peak_rss_bytes"])
        rows.append([f"{e['routes']:,}", str(e["rounds"]),
                     f"{k['tortie']:.2f} s (bgpd holds all: {h['tortie']:.2f} s)",
                     f"{k['bird']:.2f} s (RIB: {h['bird']:.2f} s)", f"**{e['ratio_kernel']:.1f}x**",
                     f"{rss['bgpd'] / MB:.0f} + {rss['felixd'] / MB:.0f} = {rss['tortie_total'] / MB:.0f} MB "
                     f"({e['bgpd_rss_bytes_per_route']:.0f} B/route in bgpd)",
                     f"{rss['bird'] / MB:.0f} MB",
                     f"bgpd {cpu['tortie']['bgpd']:.1f} + felixd {cpu['tortie']['felixd']:.1f} / BIRD "
                     f"{cpu['bird']['bird']:.1f} (**{_cpu_ratio(cpu):.1f}x**)",
                     run_cell(e)])
    return table(["routes", "rounds", "tortie into kernel (median)", "BIRD 2 into kernel (median)", "ratio",
                  "tortie peak RSS (bgpd + felixd)", "BIRD peak RSS", "CPU s (median)", "run"], rows) + footer(entries)


def _cpu_ratio(cpu: dict[str, dict[str, float]]) -> float:
    return sum(cpu["tortie"].values()) / max(sum(cpu["bird"].values()), 0.01)


def ingest(targets: list[Target]) -> list[str]:
    data = load("ingest.json")
    if not data:
        return ["No results yet: run `bench/ingest.py`."]
    rows, entries = [], []
    for key, e in data.items():
        entries.append(e)
        med = e.get("median_seconds", {})
        ratio = e.get("ratio_tortie_to_bird")
        peak = dig(e, "rss_bytes", "tortie", "peak")
        per = dig(e, "rss_bytes_per_route", "tortie")
        rows.append([key, str(e.get("rounds", NR)), num(med.get("tortie"), "{:.2f} s"), num(med.get("bird"), "{:.2f} s"),
                     num(ratio, "**{:.1f}x**"), f"{num(peak, '{:.0f} MB', MB)} ({num(per, '{:.0f}')} B/route)",
                     num(dig(e, "rss_bytes", "bird", "peak"), "{:.0f} MB", MB), run_cell(e)])
        if not e.get("feed_reader"):
            routes = e.get("routes")
            if routes == 100_000 and ratio is not None:
                targets.append({"benchmark": "ingest 100,000 routes (bgpd alone)", "target": "<= 2x BIRD's time",
                                "value": f"{ratio:.2f}", "met": ratio <= 2, "run": run_cell(e)})
            if routes == 1_000_000 and per is not None:
                targets.append({"benchmark": "ingest 1,000,000 routes (bgpd alone)", "target": "<= 400 B RSS per route",
                                "value": f"{per:.0f}", "met": per <= 400, "run": run_cell(e)})
    return table(["run shape", "rounds", "tortie-bgpd (median)", "BIRD 2 (median)", "ratio", "tortie peak RSS",
                  "BIRD peak RSS", "run"], rows) + footer(entries)


def program(targets: list[Target]) -> list[str]:
    e = load("program.json")
    if not e:
        targets.append({"benchmark": "program", "target": "one change, feed frame -> kernel ACK, p99 <= 2 ms",
                        "value": "-", "met": None, "run": "-"})
        return ["No results yet: run `bench/program.py`."]
    ratio = e.get("ratio_install")
    p99 = e.get("single_change_p99_ms")
    rows = [["bulk install, felixd / `ip -batch`", num(ratio, "{:.2f}x"),
             f"{num(e.get('felixd_bulk_install_s'), '{:.2f} s')} / {num(e.get('ip_batch_install_s'), '{:.2f} s')}"],
            ["bulk remove, felixd / `ip -batch`", num(e.get("ratio_remove"), "{:.2f}x"),
             f"{num(e.get('felixd_bulk_remove_s'), '{:.2f} s')} / {num(e.get('ip_batch_remove_s'), '{:.2f} s')}"],
            ["full reconcile, empty -> full / full -> empty", "",
             f"{num(e.get('felixd_reconcile_empty_to_full_s'), '{:.2f} s')} / "
             f"{num(e.get('felixd_reconcile_full_to_empty_s'), '{:.2f} s')}"],
            ["one change with the table installed: median / p99 / max", "",
             f"{num(e.get('single_change_median_ms'), '{:.2f} ms')} / {num(p99, '{:.2f} ms')} / "
             f"{num(e.get('single_change_max_ms'), '{:.2f} ms')}"]]
    known = {"routes", "rounds", "felixd_bulk_install_s", "ip_batch_install_s", "ratio_install", "ratio_remove",
             "felixd_bulk_remove_s", "ip_batch_remove_s", "felixd_reconcile_empty_to_full_s",
             "felixd_reconcile_full_to_empty_s", "single_change_median_ms", "single_change_p99_ms",
             "single_change_max_ms"}
    for k, v in e.items():
        if k not in known and isinstance(v, int | float) and not isinstance(v, bool):
            rows.append([k, "", num(v, "{:g}")])
    if ratio is not None:
        targets.append({"benchmark": f"program {e.get('routes', 0):,} routes", "target": "bulk install <= 1.5x `ip -batch`",
                        "value": f"{ratio:.2f}", "met": ratio <= 1.5, "run": run_cell(e)})
    targets.append({"benchmark": f"program {e.get('routes', 0):,} routes",
                    "target": "one change, feed frame -> kernel ACK, p99 <= 2 ms", "value": num(p99, "{:.2f} ms"),
                    "met": None if p99 is None else p99 <= 2, "run": run_cell(e)})
    return [f"{e.get('routes', NR):,} routes, {e.get('rounds', NR)} rounds; run {run_cell(e)}.", "",
            *table(["measure", "ratio", "time"], rows), *footer([e])]


def feed_to_kernel(targets: list[Target]) -> list[str]:
    part = load("feed_to_kernel.json")
    if not part:
        targets.append({"benchmark": "feed_to_kernel", "target": "one change through tortie-felixd, p99 <= 2 ms",
                        "value": "-", "met": None, "run": "-"})
        return ["No results yet: run `bench/feed_to_kernel.py`."]
    rows = []
    for label, e in part.items():
        felixd = f"{label} ({str(e.get('felixd_commit') or NR)[:10]})"
        rows.append([felixd, f"{e.get('routes', 0):,}", str(e.get("rounds", NR)),
                     f"{num(e.get('felixd_install_s'), '{:.2f} s')} / {num(e.get('ip_batch_install_s'), '{:.2f} s')}",
                     num(e.get("ratio_install"), "**{:.2f}x**"),
                     f"{num(e.get('felixd_install_cpu_s'), '{:.2f}')} / {num(e.get('ip_batch_install_cpu_s'), '{:.2f}')}"
                     f" ({num(e.get('ratio_install_cpu'), '{:.2f}x')})",
                     f"{num(e.get('felixd_remove_s'), '{:.2f} s')} / {num(e.get('ip_batch_remove_s'), '{:.2f} s')}",
                     f"{num(e.get('felixd_rss_loaded_mib'), '{:.0f}')} / {num(e.get('felixd_rss_peak_mib'), '{:.0f}')} MiB",
                     f"{num(e.get('single_change_p50_ms'), '{:.2f}')} / {num(e.get('single_change_p99_ms'), '{:.2f}')} ms"
                     f" ({e.get('single_change_samples', NR)})",
                     f"{num(e.get('direct_change_p50_ms'), '{:.2f}')} / {num(e.get('direct_change_p99_ms'), '{:.2f}')} ms",
                     f"{num(e.get('relay_change_p50_ms'), '{:.2f}')} / {num(e.get('relay_change_p99_ms'), '{:.2f}')} ms",
                     run_cell(e)])
    # the target is judged on the newest run of the current felixd (not a `--felixd-src` one)
    current = [(run_info(e).get("date") or "", label) for label, e in part.items() if label != "before"]
    newest = max(current)[1] if current else None
    for label, e in part.items():
        if label == newest:
            p99 = e.get("single_change_p99_ms")
            targets.append({"benchmark": f"feed_to_kernel {e.get('routes', 0):,} routes",
                            "target": "one change through tortie-felixd, p99 <= 2 ms", "value": num(p99, "{:.2f} ms"),
                            "met": None if p99 is None else p99 <= 2, "run": run_cell(e)})
    return table(["felixd", "routes", "rounds", "install: felixd / `ip -batch`", "ratio", "install CPU s (ratio)",
                  "remove", "felixd RSS with N / peak", "one change p50 / p99 (samples)",
                  "same change straight to netlink p50 / p99", "through a minimal relay p50 / p99", "run"], rows) + \
        footer(list(part.values()))


def codec(targets: list[Target]) -> list[str]:
    e = load("codec.json")
    if not e:
        targets.append({"benchmark": "codec", "target": "decode, distinct attribute set per UPDATE, >= 3x ExaBGP 5",
                        "value": "-", "met": None, "run": "-"})
        return ["No results yet: run `bench/codec.py`."]
    peer = e.get("peer", "the peer")
    rows = []
    distinct_seen = False
    for name, m in (e.get("mixes") or {}).items():
        d, enc = m.get("decode_ratio"), m.get("encode_ratio")
        rows.append([name, str(m.get("messages", NR)), str(m.get("prefixes", NR)),
                     num(dig(m, "tortie", "decode_prefixes_per_s"), "{:,.0f}"),
                     num(dig(m, "exabgp", "decode_prefixes_per_s"), "{:,.0f}"), num(d, "**{:.1f}x**"),
                     num(enc, "{:.1f}x")])
        distinct = "distinct" in name or "uncached" in name or "no_cache" in name
        distinct_seen |= distinct
        if d is not None:
            targets.append({"benchmark": f"codec mix {name}",
                            "target": f"decode >= {3 if distinct else 10}x {peer}",
                            "value": f"{d:.1f}", "met": d >= (3 if distinct else 10), "run": run_cell(e)})
    if not distinct_seen:
        targets.append({"benchmark": "codec", "target": f"decode, distinct attribute set per UPDATE, >= 3x {peer}",
                        "value": "no such mix in codec.json", "met": None, "run": run_cell(e)})
    out = [f"Peer: {peer}; repeat {e.get('repeat', NR)}; run {run_cell(e)}.", ""]
    out += table(["mix", "UPDATEs", "prefixes", "tortie decode prefixes/s", "peer decode prefixes/s",
                  "decode ratio", "encode ratio"], rows)
    paths = e.get("construct_vs_hand_written")
    if isinstance(paths, dict) and paths:
        out += ["", "construct (the specification) against the hand-written paths, per unit:", ""]
        out += table(["what", "unit", "construct", "hand-written", "speed-up"],
                     [[name, str(m.get("unit", NR)), num(m.get("construct_us"), "{:.1f} µs"),
                       num(m.get("hand_written_us"), "{:.1f} µs") if "hand_written_us" in m else "-",
                       num(m.get("speedup"), "{:.0f}x") if "speedup" in m else "-"] for name, m in paths.items()])
    if e.get("target"):
        out += ["", f"The file's own target: {e['target']} ({'met' if e.get('met') else 'MISSED'})."]
    return out + footer([e])


def scale_reflector(targets: list[Target]) -> list[str]:
    part = (load("scale.json") or {}).get("reflector", {})
    want = {"300": ["converged <= 1.5x BIRD's time", "CPU <= 5x BIRD's"],
            "1000": ["converged <= 10 s", "peak RSS <= 100 MB", "CPU <= 10 s"]}
    _scale_targets(targets, "reflector", part, want, "reflector, {} clients")
    if not part:
        return ["No results yet: run `bench/scale.py`."]
    rows = []
    for n, e in part.items():
        if "median" not in e:
            rows.append([n, "", e.get("skipped") or f"failed: {e.get('failed', '?')[:80]}", "", "", "", "", run_cell(e)])
            continue
        t, b = e["median"]["tortie"], e["median"]["bird"]
        if "failed" in t or "failed" in b:
            rows.append([n, str(e["rounds"]),
                         f"**did not converge**: {t['failed']}" if "failed" in t else f"{t['seconds']:.2f} s",
                         f"**did not converge**: {b['failed']}" if "failed" in b else f"{b['seconds']:.2f} s",
                         "-", "-", "-", run_cell(e)])
            continue
        rows.append([n, str(e["rounds"]),
                     f"{t['seconds']:.2f} s ({t['ready_seconds']:.2f} start + {t['converge_seconds']:.2f})",
                     f"{b['seconds']:.2f} s", f"**{t['seconds'] / b['seconds']:.1f}x**",
                     f"{t['peak_rss_bytes'] / MB:.0f} / {b['peak_rss_bytes'] / MB:.0f} MB, "
                     f"{t['cpu_seconds']:.1f} / {b['cpu_seconds']:.2f} CPU s", _client_birds(e, t, b), run_cell(e)])
    return table(["clients", "rounds", "tortie-bgpd reflector: start -> all converged", "BIRD 2 reflector", "ratio",
                  "peak RSS, CPU (tortie / BIRD)", "client BIRDs: CPU s, machine busy (tortie / BIRD rounds)", "run"],
                 rows) + footer(list(part.values()))


def _client_birds(e: dict[str, Any], t: dict[str, Any], b: dict[str, Any]) -> str:
    """How hard the simulated clients worked: a reflector on a machine that is all busy is starved."""
    if "client_bird_cpu_seconds" not in t or "client_bird_cpu_seconds" not in b:
        return "1: not recorded"
    busy = (f"{t['machine_busy_fraction']:.0%} / {b['machine_busy_fraction']:.0%}"
            if "machine_busy_fraction" in t and "machine_busy_fraction" in b else "busy not recorded")
    return f"{t.get('client_birds', 1)}: {t['client_bird_cpu_seconds']:.1f} / {b['client_bird_cpu_seconds']:.1f}, {busy}"


def scale_mesh(targets: list[Target]) -> list[str]:
    part = (load("scale.json") or {}).get("mesh", {})
    want = {"50": ["tortie-bgpd converged (RIB) <= 1.5x BIRD's (RIB)",
                   "bgpd + felixd converged (kernel) <= 1.5x BIRD's (kernel)",
                   "tortie-bgpd peak RSS <= 25 MB per speaker"]}
    _scale_targets(targets, "mesh", part, want, "mesh of {} speakers")
    if not part:
        return ["No results yet: run `bench/scale.py`."]
    rows = []
    for n, e in part.items():
        if "median" not in e:
            rows.append([n, "", e.get("skipped") or f"failed: {e.get('failed', '?')[:80]}", "", "", "", "", "", "", "",
                         run_cell(e)])
            continue
        m = e["median"]

        def cell(v: str, f: Callable[[dict[str, Any]], str], m: dict[str, Any] = m) -> str:
            if v not in m:
                return "-"
            return "did not converge" if "failed" in m[v] else f(m[v])
        rows.append([n, str(e["rounds"]),
                     cell("tortie", lambda x: f"{x['rib_seconds']:.2f} s"),
                     cell("tortie_felixd", lambda x: f"{x['kernel_seconds']:.2f} s"),
                     cell("bird", lambda x: f"{x['kernel_seconds']:.2f} s (RIB {x['rib_seconds']:.2f})"),
                     " / ".join(cell(v, lambda x: f"{x['ready_seconds']:.2f} + {x['after_ready_seconds']:.2f}"
                                     if "ready_seconds" in x else NR) for v in ("tortie", "tortie_felixd", "bird")),
                     " / ".join(cell(v, lambda x: f"{x['peak_rss_bytes_per_speaker']['max'] / MB:.0f}")
                                for v in ("tortie", "tortie_felixd", "bird")) + " MB",
                     " / ".join(cell(v, lambda x: f"{x['cpu_seconds']:.1f}") for v in ("tortie", "tortie_felixd", "bird")),
                     " / ".join(cell(v, lambda x: f"{x['new_block_seconds']:.2f}")
                                for v in ("tortie", "tortie_felixd", "bird")) + " s",
                     " / ".join(cell(v, lambda x: f"{x['collisions']} / {x['session_restarts']}"
                                     if "collisions" in x else NR) for v in ("tortie", "tortie_felixd")),
                     run_cell(e)])
    return table(["N", "rounds", "tortie-bgpd (RIB)", "bgpd + felixd (kernel)", "BIRD 2 (kernel)",
                  "all speakers up + then converged (bgpd / bgpd+felixd / BIRD)", "peak RSS per speaker, max (bgpd / bgpd+felixd / BIRD)", "CPU s, all speakers (same order)",
                  "one new block -> every node (same order)",
                  "start storm: collisions / session restarts (bgpd / bgpd+felixd)", "run"], rows) + footer(list(part.values()))


def idle(targets: list[Target]) -> list[str]:
    e = (load("idle.json") or {}).get("idle")
    if not e:
        return ["No results yet: run `bench/idle.py`."]
    t, b = e["median"]["tortie"], e["median"]["bird"]
    rows = [["start (spawn -> control socket answers)", f"{t['start_s']:.3f} s", f"{b['start_s']:.3f} s",
             f"{t['start_s'] / b['start_s']:.0f}x" if b["start_s"] else "-"],
            ["CPU to that point", f"{t['start_cpu_s']:.2f} s", f"{b['start_cpu_s']:.2f} s", "-"],
            ["resident set, idle", f"{t['rss_mb']:.1f} MB", f"{b['rss_mb']:.1f} MB", f"{t['rss_mb'] / b['rss_mb']:.1f}x"],
            ["peak resident set", f"{t['peak_rss_mb']:.1f} MB", f"{b['peak_rss_mb']:.1f} MB",
             f"{t['peak_rss_mb'] / b['peak_rss_mb']:.1f}x"]]
    head = [f"median of {len(e['rounds']['tortie'])} rounds", "tortie-bgpd", "BIRD 2", "ratio"]
    return [*table(head, rows), "", f"Run: {run_cell(e)}.", *footer([e])]


def _scale_targets(targets: list[Target], part_name: str, part: dict[str, Any], want: dict[str, list[str]],
                   label: str) -> None:
    for n, names in want.items():
        e = part.get(n)
        got = {t["target"]: t for t in (e or {}).get("targets", [])}
        for name in names:
            t = got.get(name)
            why = "-" if e is None else (e.get("skipped") or e.get("failed") or "-")
            value = num(t["value"], "{}") if t else why[:60]
            if value.startswith("did not converge"):
                value = "did not converge (see the table)"
            targets.append({"benchmark": label.format(n), "target": name, "value": value,
                            "met": t["met"] if t else None, "run": run_cell(e) if e else "-"})


def targets_table(targets: list[Target]) -> list[str]:
    missed = sum(1 for t in targets if t["met"] is False)
    unmeasured = sum(1 for t in targets if t["met"] is None)
    head = [f"{len(targets)} targets: {len(targets) - missed - unmeasured} met, {missed} missed, "
            f"{unmeasured} not measured.", ""]
    rows = [[t["benchmark"], t["target"], t["value"], verdict(t["met"]), t["run"]] for t in targets]
    return head + table(["benchmark", "target", "measured", "", "run"], rows)


# ---------------------------------------------------------------- README


SECTIONS = ("datapath", "idle", "scale-reflector", "scale-mesh", "ingest", "program", "feed_to_kernel", "codec")


def generate() -> dict[str, list[str]]:
    targets: list[Target] = []
    blocks = {"datapath": datapath(targets), "idle": idle(targets), "scale-reflector": scale_reflector(targets),
              "scale-mesh": scale_mesh(targets), "ingest": ingest(targets), "program": program(targets),
              "feed_to_kernel": feed_to_kernel(targets), "codec": codec(targets)}
    blocks["targets"] = targets_table(targets)
    return blocks


def render(text: str, blocks: dict[str, list[str]]) -> str:
    for name, lines in blocks.items():
        pattern = re.compile(rf"(<!-- report:{name} -->\n).*?(<!-- /report:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{README}: no <!-- report:{name} --> ... <!-- /report:{name} --> block")
        body = "\n".join(lines) + "\n"
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 if README.md differs from the results")
    p.add_argument("--no-plots", action="store_true", help="leave the plot files alone")
    args = p.parse_args()
    old = README.read_text()
    new = render(old, generate())
    if args.check:
        if new != old:
            print(f"{README} is out of date: run bench/report.py")
            return 1
        return 0
    README.write_text(new)
    if not args.no_plots and (RESULTS / "scale.json").exists():
        plots.scale_plots(json.loads((RESULTS / "scale.json").read_text()), RESULTS)
    print(f"rewrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
