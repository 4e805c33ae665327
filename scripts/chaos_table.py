#!/usr/bin/env python3
"""docs/reliability.md's chaos table, from one chaos run's results.

    scripts/chaos_table.py RESULTS.json DOC.md     # `make chaos` runs this after every host's events

RESULTS.json is what tests/chaos wrote (build/chaos/results.json: one entry per lab it ran, each
with its date, commit, machine, load, command and every event's outcome). The table replaces what
sits between the markers below in DOC.md; everything else in the file is left alone. Nothing here
is typed by hand: the numbers are the run's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- chaos-table:begin (scripts/chaos_table.py writes this part; do not edit) -->"
END = "<!-- chaos-table:end -->"


def _whole(e: dict[str, Any]) -> str:
    return "never (within 90 s)" if e.get("whole_s") is None else f"{e['whole_s']:.2f} s"


def _pairs(e: dict[str, Any]) -> str:
    pairs = e.get("lost_pairs") or {}
    return ", ".join(f"{k.replace('>', '→')} {v}" for k, v in sorted(pairs.items())) or "-"


def render(results: dict[str, Any]) -> str:
    runs = results.get("runs", [])
    scope = "every kind of event on every host" if results.get("every_host") else \
        "each kind of event once, on a rotating host (make test's short run)"
    lines = [BEGIN, ""]
    if not runs:
        return "\n".join([*lines, "No chaos run recorded.", "", END])
    lines.append(f"Scope: {scope}.")
    lines.append("")
    missed_all: list[str] = []
    for run in runs:
        events = run.get("events", [])
        pods = run.get("pods", [])
        lines.append(f"**Lab on the {run['datastore']} datastore**: {run['started']}, commit `{run['commit']}`, "
                     f"{run['machine']}, load {run['load']} at the start; `{run['command']}`; {len(pods)} pods, "
                     f"{len(pods) * (len(pods) - 1)} ordered pairs, {run['rate']:g} probes a second per pair.")
        lines.append("")
        lines.append("| event | on | probes lost | probes sent | time to whole | action took | lost per pair "
                     "(src→dst) | goal | met |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for e in events:
            met = "yes" if e.get("met") else "**no**"
            if not e.get("met"):
                missed_all.append(f"{e['kind']} on {e['target']}")
            lines.append(f"| {e['kind']} | {e['target']} | {e['lost']} | {e['sent']} | {_whole(e)} | "
                         f"{e['action_s']:.2f} s | {_pairs(e)} | {e['goal']} | {met} |")
        lines.append("")
    lines.append("Goals missed: " + (", ".join(missed_all) if missed_all else "none") + ".")
    lines += ["", END]
    return "\n".join(lines)


def write(doc: Path, table: str) -> None:
    text = doc.read_text()
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + table + tail
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("doc", type=Path)
    args = ap.parse_args(argv)
    if not args.results.exists():
        print(f"{args.results}: no chaos results (did the chaos tier run?)", file=sys.stderr)
        return 1
    write(args.doc, render(json.loads(args.results.read_text())))
    print(f"{args.doc}: chaos table from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
