"""Run the fuzz targets: `python -m fuzz.run [--seconds N] [--jobs J] [TARGET ...]`.

Each target runs under atheris for N seconds (`make fuzz`: FUZZ_SECONDS, default 600; `make test`:
a few seconds each), in its own process, J at a time, niced. Per target, under the work directory
(default build/fuzz): `seeds/` (rebuilt from tests/data and the target's own seeds on every run),
`corpus/` (what libFuzzer keeps, grown across runs), `findings/` (one input and traceback per
distinct failure), `artifacts/` (libFuzzer's crash and timeout inputs), `log/`, and `stats.jsonl`
(one line per run: executions, libFuzzer's coverage counters, corpus size). The committed corpus
`fuzz/corpus/TARGET` (minimised from the campaigns) is read as well, so even a short run replays
everything the campaigns found interesting.

A finding (an exception the oracle does not allow, or an input that runs longer than --timeout)
fails the run. `--keep-going` (campaigns) records findings and carries on: in-process for
exceptions, by restarting the target for the time left after a timeout or crash.

`--coverage` replays each target's corpus under coverage.py and reports the line coverage of the
code it exercises. `--report FILE` writes the numbers as JSON; `--tier-report FILE` writes the
test-tier report `make test`'s summary reads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fuzz.targets import TARGETS, load

REPO = Path(__file__).resolve().parents[1]
STATUS_RE = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
EXECS_RE = re.compile(r"^stat::number_of_executed_units: (\d+)", re.M)
RESTARTS = 20  # a campaign gives up on a target that keeps crashing the same way


@dataclass
class TargetRun:
    target: str
    seconds: float = 0.0
    executions: int = 0
    cov: int = 0  # libFuzzer's coverage counters (instrumented Python branches) at the end
    ft: int = 0  # libFuzzer's features
    corpus: int = 0
    findings: list[str] = field(default_factory=list)  # one line each: signature or artifact
    problem: str = ""  # the run itself went wrong (no stats: atheris missing, import error)
    starved: list[str] = field(default_factory=list)  # timeouts that replay quickly: machine load, no hang
    line_coverage: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.problem


def write_seeds(target: str, directory: Path) -> int:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    n = 0
    for seed in load(target).seeds():
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        n += 1
    return n


def write_dictionary(target: str, path: Path) -> bool:
    words = getattr(load(target), "DICTIONARY", ())
    if not words:
        return False
    path.write_text("".join(f'"{_dict_escape(w.encode())}"\n' for w in words))
    return True


def _dict_escape(word: bytes) -> str:
    """libFuzzer's dictionary syntax: printable ASCII as is, `\\` and `\"` escaped, the rest \\xNN."""
    return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}" for b in word)


def _parse(log: str, run: TargetRun) -> int | None:
    """Fold one libFuzzer log into `run`; returns the executions it reports."""
    execs = None
    for line in log.splitlines():
        m = STATUS_RE.match(line)
        if m:
            execs = int(m.group(1))
            run.cov, run.ft, run.corpus = int(m.group(3)), int(m.group(4)), int(m.group(5))
    final = EXECS_RE.search(log)
    if final:
        execs = int(final.group(1))
    return execs


def fuzz_target(target: str, seconds: float, work: Path, timeout: int, keep_going: bool, nice: int) -> TargetRun:
    module = load(target)
    base = work / target
    corpus, seeds, findings, artifacts, logs = (base / d for d in ("corpus", "seeds", "findings", "artifacts", "log"))
    for d in (corpus, findings, artifacts, logs):
        d.mkdir(parents=True, exist_ok=True)
    write_seeds(target, seeds)
    dict_path = base / "dictionary"
    has_dict = write_dictionary(target, dict_path)
    committed = REPO / "fuzz" / "corpus" / target
    known = {p.name for p in findings.iterdir()} | {p.name for p in artifacts.iterdir()}
    run = TargetRun(target)
    env = dict(os.environ, FUZZ_FINDINGS=str(findings), FUZZ_KEEP_GOING="1" if keep_going else "0",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.monotonic()
    for attempt in range(RESTARTS):
        left = seconds - (time.monotonic() - start)
        if left < 1 and attempt:
            break
        cmd = ["nice", "-n", str(nice), sys.executable, "-m", "fuzz.main", target,
               f"-max_total_time={max(1, int(left))}", f"-timeout={timeout}", "-rss_limit_mb=2048",
               f"-max_len={module.MAX_LEN}", "-len_control=20", "-print_final_stats=1",
               f"-artifact_prefix={artifacts}/"]
        if has_dict:
            cmd.append(f"-dict={dict_path}")
        cmd += [str(corpus), str(seeds)] + ([str(committed)] if committed.is_dir() else [])
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        log_path = logs / f"{stamp}-{attempt}.log"
        # the run's own deadline plus start-up and corpus loading on a loaded machine
        with log_path.open("w") as log_file:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  timeout=left + 300 + timeout, check=False)
        log = log_path.read_text(errors="replace")
        execs = _parse(log, run)
        if execs is None:
            run.problem = f"no libFuzzer statistics (exit {proc.returncode}); see {log_path}:\n" + log[-2000:]
            break
        run.executions += execs
        if proc.returncode == 0:
            break
        if not keep_going:
            break
    run.seconds = round(time.monotonic() - start, 1)
    for p in sorted(findings.iterdir()):
        if p.suffix == ".txt" and p.name not in known:
            run.findings.append(f"{p.read_text().splitlines()[0]} ({p.with_suffix('.bin')})")
    for p in sorted(artifacts.iterdir()):
        if p.name in known:
            continue
        kind = p.name.split("-")[0]
        if kind == "crash" and run.findings:
            continue  # the same exception, already kept with its traceback under findings/
        if kind in ("timeout", "slow"):
            replayed = replay_seconds(target, p, timeout)
            if replayed is not None and replayed < timeout / 2:
                # libFuzzer's clock is the wall clock: on a starved machine a quick input can overrun
                # it. An input that runs quickly in a fresh process is no hang.
                run.starved.append(f"{p.name}: replayed in {replayed:.2f} s")
                continue
        run.findings.append(f"libFuzzer {kind} ({p})")
    with (base / "stats.jsonl").open("a") as f:
        f.write(json.dumps({"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                            **{k: v for k, v in asdict(run).items() if k != "line_coverage"}}) + "\n")
    return run


def replay_seconds(target: str, path: Path, timeout: int) -> float | None:
    """CPU seconds one input takes in a fresh process (None: it failed or ran past `timeout` again)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = ("import resource, sys, time; from fuzz.targets import load; t = load(sys.argv[1]); "
            "data = open(sys.argv[2], 'rb').read(); c = time.process_time(); "
            "exec('try:\\n t.check(data)\\nexcept Exception:\\n pass'); print(time.process_time() - c)")
    try:
        proc = subprocess.run([sys.executable, "-c", code, target, str(path)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout * 3, check=False)
    except subprocess.TimeoutExpired:
        return None
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def line_coverage(target: str, work: Path) -> dict[str, float]:
    """Replay the target's corpus (and seeds, and the committed corpus) under coverage.py."""
    module = load(target)
    base = work / target
    dirs = [d for d in (base / "corpus", base / "seeds", REPO / "fuzz" / "corpus" / target) if d.is_dir()]
    data = base / "coverage.data"
    include = ",".join(str(REPO / c) + ("/*" if c.endswith("/") else "") for c in module.COVERS)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "coverage", "run", f"--data-file={data}", "--branch",
                    f"--include={include}", "-m", "fuzz.main", target, "--replay", *map(str, dirs)],
                   cwd=REPO, env=env, capture_output=True, check=False, timeout=3600)
    out = base / "coverage.json"
    subprocess.run([sys.executable, "-m", "coverage", "json", f"--data-file={data}", "-o", str(out)],
                   cwd=REPO, env=env, capture_output=True, check=False, timeout=600)
    if not out.exists():
        return {}
    report = json.loads(out.read_text())
    result = {"total": round(report["totals"]["percent_covered"], 1)}
    for name, f in report["files"].items():
        result[str(Path(name).resolve().relative_to(REPO))] = round(f["summary"]["percent_covered"], 1)
    return result


def minimise(target: str, work: Path, timeout: int) -> int:
    """Merge the target's corpus, seeds and committed corpus into a fresh minimal fuzz/corpus/TARGET
    (libFuzzer -merge=1: the fewest inputs that keep every feature). Returns the inputs kept."""
    module = load(target)
    base = work / target
    dest = REPO / "fuzz" / "corpus" / target
    fresh = dest.with_name(target + ".new")
    if fresh.exists():
        shutil.rmtree(fresh)
    fresh.mkdir(parents=True)
    sources = [d for d in (dest, base / "corpus", base / "seeds") if d.is_dir()]
    # merge runs the fuzzer again as a child, by argv[0] and the options only: give it a program
    wrapper = base / "target.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fuzz.main {target} "$@"\n')
    wrapper.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(REPO), FUZZ_ARGV0=str(wrapper))
    proc = subprocess.run([sys.executable, "-m", "fuzz.main", target, "-merge=1", f"-timeout={timeout}",
                           f"-max_len={module.MAX_LEN}", "-rss_limit_mb=2048", str(fresh), *map(str, sources)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=7200, check=False)
    if proc.returncode != 0:
        shutil.rmtree(fresh)
        raise RuntimeError(f"merge of {target} failed:\n{proc.stderr[-3000:]}")
    if dest.exists():
        shutil.rmtree(dest)
    fresh.rename(dest)
    return sum(1 for _ in dest.iterdir())


def totals(work: Path, target: str) -> dict[str, float]:
    """Every run recorded for a target in this work directory: executions and seconds, summed."""
    path = work / target / "stats.jsonl"
    execs, seconds = 0, 0.0
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            execs += row["executions"]
            seconds += row["seconds"]
    return {"executions": execs, "seconds": round(seconds)}


def tier_report(runs: list[TargetRun], path: Path) -> None:
    tests = []
    for r in runs:
        outcome = "passed" if r.ok else "failed"
        reason = r.problem.splitlines()[0] if r.problem else "; ".join(r.findings)
        tests.append({"id": f"fuzz::{r.target}", "outcome": outcome, "reason": reason[:500],
                      "detail": f"{r.executions} executions in {r.seconds:.0f} s, cov {r.cov}"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tier": "fuzz", "tests": tests}, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="*", help=f"default: all ({', '.join(TARGETS)})")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", "600")))
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("FUZZ_JOBS", "2")))
    ap.add_argument("--work", type=Path, default=REPO / "build" / "fuzz")
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("FUZZ_TIMEOUT", "10")),
                    help="seconds one input may take before it counts as a hang (default 10)")
    ap.add_argument("--keep-going", action="store_true")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--coverage", action="store_true")
    ap.add_argument("--minimise", action="store_true",
                    help="no fuzzing: merge each target's corpus under --work into fuzz/corpus/TARGET")
    ap.add_argument("--report", type=Path)
    ap.add_argument("--tier-report", type=Path)
    args = ap.parse_args(argv)
    targets = args.targets or list(TARGETS)
    for t in targets:
        load(t)  # an unknown target or a target that does not import is an error before anything runs
    if args.minimise:
        for t in targets:
            print(f"{t}: {minimise(t, args.work, args.timeout)} inputs in fuzz/corpus/{t}", flush=True)
        return 0
    print(f"fuzz: {', '.join(targets)}: {args.seconds:.0f} s each, {args.jobs} at a time, work {args.work}",
          flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(fuzz_target, t, args.seconds, args.work, args.timeout, args.keep_going, args.nice)
                   for t in targets]
        runs = [f.result() for f in futures]
    if args.coverage:
        for r in runs:
            r.line_coverage = line_coverage(r.target, args.work)
    width = max(len(t) for t in targets)
    print(f"{'target':<{width}}  {'seconds':>7}  {'executions':>10}  {'exec/s':>6}  {'cov':>5}  {'ft':>6}  "
          f"{'corpus':>6}  {'all runs':>11}  result")
    for r in runs:
        all_runs = totals(args.work, r.target)["executions"]
        rate = r.executions / r.seconds if r.seconds else 0
        result = "ok" if r.ok else ("PROBLEM: " + r.problem.splitlines()[0] if r.problem
                                    else f"{len(r.findings)} FINDING(S)")
        cov = f"  lines {r.line_coverage.get('total', 0):.1f}%" if r.line_coverage else ""
        print(f"{r.target:<{width}}  {r.seconds:>7.0f}  {r.executions:>10}  {rate:>6.0f}  {r.cov:>5}  {r.ft:>6}  "
              f"{r.corpus:>6}  {all_runs:>11}  {result}{cov}")
        for f in r.findings:
            print(f"    finding: {f}")
        for f in r.starved:
            print(f"    timeout not confirmed (machine load, not a hang): {f}")
    print(f"fuzz: {sum(r.executions for r in runs)} executions in this run, "
          f"{sum(totals(args.work, r.target)['executions'] for r in runs)} in all runs recorded under {args.work}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "runs": [asdict(r) for r in runs],
            "totals": {r.target: totals(args.work, r.target) for r in runs}}, indent=1))
    if args.tier_report:
        tier_report(runs, args.tier_report)
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
