"""The article's IP-in-IP steps in the VM tier's Debian kernel, for `make demo` on a kernel without
`ipip`: the host boots the VM and streams its console; inside, the whole lab comes up (four hosts
with tortie-bgpd and tortie-felixd, the pods, the fabric with its cloud check) and `lab.story` runs
steps 1 and 3 exactly as it runs the others on the host, then writes its results as JSON to the
job directory for the host's summary and report.

    host:  run_ipip_steps(on_line=print) -> StepsInVm (the Run, or why there is none)
    guest: python -m scripts.vm.steps --guest --out $TORTIE_VM_JOB_DIR/run.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.vm.image import CACHE, GUEST_JOB_DIR, ImageError, KernelUnavailable, ensure_image  # noqa: E402
from scripts.vm.run import QEMU, VmError, accelerator, run_in_vm  # noqa: E402

IPIP_KEYS = ("1", "3")
RESULTS = "run.json"
STOPPED = 3  # the guest's exit status when the story stopped with an error (its results are partial)
TIMES = CACHE / "demo-vm-seconds.json"  # how long the last runs took here, for the next estimate
# Under emulation Python runs about ten times slower than on the host: every time-out scales.
SLOW_IN_VM = 10.0
VM_MEMORY_MB = 1536  # eight daemons, four servers, three probers and tmpfs
VM_CPUS = 2  # the lab's processes start in parallel; QEMU runs one host thread per virtual CPU
DEFAULT_TIMEOUT = 1800.0


@dataclass
class StepsInVm:
    run: object | None  # lab.results.Run when the guest wrote its results
    kernel: str = ""
    accel: str = ""
    seconds: float = 0.0
    boot_seconds: float | None = None
    problem: str = ""  # why there are no results (or why they are incomplete)
    console_tail: list[str] = field(default_factory=list)


def estimate() -> tuple[float, str]:
    """Expected seconds for the VM part and where the number comes from."""
    kvm = accelerator()[1] == "kvm"
    try:
        past = json.loads(TIMES.read_text())
        runs = [float(s) for s in past.get("seconds", [])][-5:]
    except (OSError, ValueError, TypeError):
        runs = []
    if runs:
        span = f"{min(runs) / 60:.1f} to {max(runs) / 60:.1f} min" if len(runs) > 1 else f"{runs[0] / 60:.1f} min"
        return runs[-1], f"the last {len(runs)} run{'s' if len(runs) > 1 else ''} here took {span}; longer when the machine is busy"
    if kvm:
        return 120.0, "with KVM"
    return 420.0, "under software emulation (no usable KVM); longer when the machine is busy"


def _record(seconds: float) -> None:
    try:
        past = json.loads(TIMES.read_text()) if TIMES.exists() else {}
        runs = [*past.get("seconds", []), round(seconds, 1)][-5:]
        TIMES.parent.mkdir(parents=True, exist_ok=True)
        TIMES.write_text(json.dumps({"seconds": runs}))
    except (OSError, ValueError):
        pass


def unavailable() -> str:
    """Why the VM cannot run here ("" when it can, as far as can be told without booting)."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (apt package qemu-system-x86; scripts/setup.sh installs it)"
    return ""


def guest_command(out: str) -> list[str]:
    return [sys.executable, "-m", "scripts.vm.steps", "--guest", "--out", out]


def run_ipip_steps(on_line: Callable[[str], None] | None = None, timeout: float = DEFAULT_TIMEOUT) -> StepsInVm:
    from lab.results import Run

    why = unavailable()
    if why:
        return StepsInVm(None, problem=why)
    try:
        image = ensure_image()
    except KernelUnavailable as exc:
        return StepsInVm(None, problem=f"Debian's kernel package cannot be fetched: {exc}")
    except ImageError as exc:
        return StepsInVm(None, problem=f"VM image: {exc}")
    accel = accelerator()[1]
    with tempfile.TemporaryDirectory(prefix="tortie-demo-vm-") as tmp:
        try:
            result = run_in_vm(guest_command(f"{GUEST_JOB_DIR}/{RESULTS}"), cwd=REPO, timeout=timeout, image=image,
                               job_dir=Path(tmp), on_line=on_line, memory_mb=VM_MEMORY_MB, cpus=VM_CPUS)
        except VmError as exc:
            return StepsInVm(None, image.version, accel, problem=str(exc))
        out = StepsInVm(None, image.version, accel, result.total_seconds, result.boot_seconds,
                        console_tail=result.output.splitlines()[-40:])
        results = Path(tmp) / RESULTS
        if results.exists():
            try:
                out.run = Run.loads(results.read_text())
            except (ValueError, TypeError, KeyError) as exc:
                out.problem = f"unreadable results from the VM: {exc}"
        if result.timed_out:
            out.problem = f"the VM ran out of time ({timeout:.0f} s)"
        elif result.returncode == STOPPED:
            out.problem = "the story in the VM stopped with an error (its traceback is in the lines above)"
        elif out.run is None and not out.problem:
            out.problem = f"the VM wrote no results (exit {result.returncode})"
        if out.run is not None and not result.timed_out:
            _record(result.total_seconds)
    return out


def guest(out: Path, keys: Sequence[str] = IPIP_KEYS) -> int:
    """Inside the VM: the lab, steps `keys`, results to `out`."""
    import subprocess

    from lab.cluster import Lab
    from lab.story import Story

    if os.environ.get("TORTIE_IN_VM") != "1":
        print("--guest runs inside the VM only (scripts/vm/run.py sets TORTIE_IN_VM=1)", file=sys.stderr)
        return 2
    proc = subprocess.run(["modprobe", "ipip"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"modprobe ipip failed: {proc.stderr.strip()}", file=sys.stderr)
        return 1
    lab = Lab(Path("/run/tortie-lab"))
    t0 = time.monotonic()
    print("vm: building the lab (four hosts, eight daemons, three pods) ...", flush=True)
    story = Story(lab, say=lambda s: print(s, flush=True), slow=SLOW_IN_VM, where="vm")
    stopped = False
    try:
        story.up(time_first_step=True)
        print(f"vm: lab up in {time.monotonic() - t0:.0f} s", flush=True)
        run = story.run(list(keys), nat=False, dual=False)
    except Exception:  # the steps done so far still go back to the host, the rest reported as not run
        traceback.print_exc()
        sys.stderr.flush()
        run, stopped = story.run_record, True
    finally:
        story.close()
        lab.down()
    out.write_text(run.dumps())
    if stopped:
        return STOPPED
    return 0 if all(s.ok for s in run.steps) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guest", action="store_true", help="run the steps here (inside the VM)")
    parser.add_argument("--out", type=Path, help="where the guest writes its results")
    parser.add_argument("--keys", default=",".join(IPIP_KEYS), help="steps to run (default 1,3)")
    args = parser.parse_args(argv)
    keys = [k for k in args.keys.split(",") if k]
    if args.guest:
        if args.out is None:
            parser.error("--guest needs --out")
        return guest(args.out, keys)
    res = run_ipip_steps(on_line=lambda line: print(line, flush=True))
    print(f"vm: {res.seconds:.0f} s; {res.problem or 'results back'}", file=sys.stderr)
    return 0 if res.run is not None and not res.problem else 1


if __name__ == "__main__":
    sys.exit(main())
