"""`make demo`: the Calico routing article's story on this machine, every step of it.

Brings the lab up (four hosts running tortie-bgpd and tortie-felixd, three pods, a fabric with the
cloud source/destination check; dual stack), walks the article's steps printing what it shows, and
takes the lab down again (KEEP=1 leaves it up to explore). When this kernel cannot do IP-in-IP, the
IP-in-IP steps (1 and 3) run first, with the whole lab, in the VM tier's Debian kernel under QEMU
(`scripts/vm/steps.py`), their output streamed here. At the end: a summary of every step and one
self-contained HTML report (`build/demo/report.html`, or $TORTIE_DEMO_REPORT).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import article, report  # noqa: E402
from lab.cluster import Lab  # noqa: E402
from lab.results import Run, StepResult  # noqa: E402
from lab.story import Story, kernel_has_ipip  # noqa: E402
from lab.topology import SEED_CLUSTER, seed_scenario  # noqa: E402
from proto.resources import load_model  # noqa: E402

REPORT = Path(os.environ.get("TORTIE_DEMO_REPORT", REPO / "build" / "demo" / "report.html"))
IPIP_KEYS = tuple(s.key for s in article.STEPS if s.needs_ipip)


def vm_part(say: Callable[[str], None]) -> tuple[list[StepResult], dict[str, object]]:
    from scripts.vm.steps import estimate, run_ipip_steps

    t0 = time.monotonic()
    res = run_ipip_steps(on_line=lambda line: say(f"vm| {line}"))
    info: dict[str, object] = {"kernel": res.kernel, "accel": "KVM" if res.accel == "kvm" else
                               "software emulation (TCG)", "seconds": round(time.monotonic() - t0, 1),
                               "boot_seconds": res.boot_seconds, "problem": res.problem,
                               "why": "this host's kernel cannot do IP-in-IP.", "estimate": estimate()[0]}
    steps = list(res.run.steps) if res.run is not None else []  # type: ignore[attr-defined]
    if res.problem:
        say(f"vm: {res.problem}")
        for line in res.console_tail[-15:]:
            say(f"vm| {line}")
    done = {s.key for s in steps}
    for key in IPIP_KEYS:
        if key not in done:
            spec = article.step(key)
            steps.append(StepResult(key, spec.name, spec.pool_file, "", spec.srcdst, dict(spec.expected),
                                    where="vm", skipped=f"the VM did not run it: {res.problem or 'no result'}"))
    return steps, info


def print_summary(run_: Run) -> None:
    print("\n=== Summary")
    print(f"{'step':42} {'result':8} {'kernel, all hosts':>18} {'pods':>8}  ran")
    for r in run_.steps:
        if r.skipped:
            k = m = ""
        else:
            k = "unchanged" if r.pool_file is None and r.key != "1" else \
                (f"{r.kernel_all:.2f} s" if r.kernel_all is not None else "never")
            m = "" if not any(r.expected.values()) else \
                (f"{r.matrix_seconds:.2f} s" if r.matrix_seconds is not None else "never")
        where = "VM (Debian kernel)" if r.where == "vm" else "here"
        print(f"{r.name:42} {r.status:8} {k:>18} {m:>8}  {where}")
        if r.skipped:
            print(f"{'':42} ({r.skipped})")
    if run_.nat is not None:
        print(f"{'5. natOutgoing':42} {'ok' if run_.nat.ok else 'WRONG':8} {'':>18} {'':>8}  here")
    if run_.dual_stack is not None:
        print(f"{'6. dual stack (IPv6)':42} {'ok' if run_.dual_stack.ok else 'WRONG':8} {'':>18} {'':>8}  here")
    print("Times: from the switch (the pool written by `tortiectl apply`, or the check switched; step 1: the")
    print("daemons' start) until every host's kernel held the article's routes, and until every pod pair that")
    print("must work worked. Pairs that must fail get one short fixed probe each, outside the timing.")
    if any(r.where == "vm" and not r.skipped for r in run_.steps):
        print("The VM's times are under software emulation (every process about ten times slower), not")
        print("comparable with this host's.")


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root: it creates network namespaces", file=sys.stderr)
        return 1
    keep = os.environ.get("KEEP") == "1"
    ipip_here = kernel_has_ipip()
    host_keys = [s.key for s in article.STEPS if ipip_here or not s.needs_ipip]
    vm_steps: list[StepResult] = []
    vm_info: dict[str, object] = {}
    print("The Calico routing article's cluster, in network namespaces on this machine: hosts master,")
    print("worker-1, worker-2 (10.30.0.0/24, AWS-style src/dst check), worker-3 (10.30.1.0/24) behind a gateway")
    print("that knows only host subnets, pods pod-1..3; dual stack (IPv6 beside IPv4).")
    if not ipip_here:
        from scripts.vm.steps import estimate, unavailable

        seconds, basis = estimate()
        why_not = unavailable()
        print()
        print(f"This kernel ({os.uname().release}) cannot do IP-in-IP, so the article's IP-in-IP steps")
        print("(1. ipipMode Always and 3. ipipMode CrossSubnet) run first, with the whole lab, inside a QEMU VM")
        if why_not:
            print(f"booted from Debian's kernel; but the VM cannot run here: {why_not}.")
        else:
            print(f"booted from Debian's kernel, which has ipip. Expected time: about {seconds / 60:.0f} min "
                  f"({basis}).")
            print("Their output streams below (lines start `vm|`); then the other steps run here.")
        print()
        vm_steps, vm_info = vm_part(print)
    lab = Lab(Path(os.environ.get("TORTIE_LAB_DIR", "/run/tortie-lab")))
    print("\nBuilding the lab here ...")
    t0 = time.monotonic()
    story = Story(lab, say=print)
    ok = False
    try:
        story.up(SEED_CLUSTER, time_first_step=ipip_here)
        print(f"lab up in {time.monotonic() - t0:.1f} s; every host runs tortie-bgpd and tortie-felixd")
        result = story.run(host_keys)
        result.steps = sorted([*result.steps, *vm_steps], key=lambda r: [s.key for s in article.STEPS].index(r.key))
        result.vm = vm_info
        print_summary(result)
        # A step not run is a failure too: every step of the article runs on any kernel (the VM).
        ok = all(r.ok for r in result.steps) and bool(result.nat and result.nat.ok) and \
            (result.dual_stack is None or result.dual_stack.ok)
        model = load_model(SEED_CLUSTER.read_text(), str(SEED_CLUSTER))
        blocks = {n.name: [str(b.cidr) for b in model.blocks_for(n)] for n in model.nodes}
        path = report.write(REPORT, result, seed_scenario(), blocks)
        (REPORT.parent / "run.json").write_text(result.dumps())
        print(f"\nReport: {path}  (one self-contained HTML file: open it in any browser, e.g. "
              f"file://{path})")
    finally:
        story.close()
        if keep:
            print(f"\nKEEP=1: the lab stays up (state in {lab.dir}). Try:")
            print("  tortiectl lab exec master -- tortiectl node status")
            print("  tortiectl lab exec worker-1 -- tortiectl routes")
            print("  tortiectl lab exec worker-1 -- ip -6 route")
            print("  tortiectl lab exec pod-1 -- curl -s http://192.168.97.193/")
            print("  tortiectl lab exec pod-1 -- curl -s 'http://[fd00:192:168:97::1]/'")
            print("  tortiectl lab srcdst on|off")
            print("  tortiectl lab exec master -- tortiectl apply -f configs/ippool-direct.yaml")
            print("  tortiectl lab down")
        else:
            lab.down()
            print("\nlab down")
    if not ok:
        print("demo: not every step ran and showed what the article shows (see the summary above)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        sys.exit(1)
