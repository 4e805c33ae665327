"""Boot Debian's kernel under QEMU, run one command inside, stream its output, return its exit code.

The guest sees the host's `/` read-only over virtio-9p with a tmpfs overlay (so it can write but
changes nothing on the host), fresh `/run` and `/tmp`, no network card, and a per-run job directory
shared read-write at `/run/tortie-vm` (`$TORTIE_VM_JOB_DIR`) for results such as a JUnit file. The
command runs as root with `TORTIE_IN_VM=1` set; when it ends, its exit code is printed on the serial
console behind a per-run marker and the guest resets itself through sysrq. A hard timeout kills QEMU.

    .venv/bin/python scripts/vm/run.py [--timeout S] [--cwd DIR] [--env K=V ...] -- COMMAND ...

exits with the command's code, 124 when the timeout hit, 125 when the VM failed to run it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import selectors
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__:
    from .image import GUEST_JOB_DIR, JOB_SCRIPT, JOB_TAG, ROOT_TAG, Image, ensure_image
else:  # run as a script: scripts/vm/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from scripts.vm.image import GUEST_JOB_DIR, JOB_SCRIPT, JOB_TAG, ROOT_TAG, Image, ensure_image

QEMU = "qemu-system-x86_64"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Quiet kernel, reboot (so QEMU exits, with -no-reboot) on panic, skip probing hardware we lack.
# no_timer_check: on a busy host the emulated timer can miss the kernel's IO-APIC check, which then
# panics ("IO-APIC + timer doesn't work!"); seen here at load 15.
KERNEL_ARGS = ("console=ttyS0 quiet loglevel=1 panic=-1 oops=panic rdinit=/init "
               "i8042.noaux=1 i8042.nopnp=1 8250.nr_uarts=1 nowatchdog no_timer_check")
EXIT_TIMEOUT = 124
EXIT_VM_FAILED = 125


class VmError(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    returncode: int | None  # None: the command's end was never seen (timeout, crash)
    output: str  # everything on the serial console, `\r` removed
    boot_seconds: float | None  # QEMU start to the command's start
    total_seconds: float
    timed_out: bool


def accelerator() -> list[str]:
    """KVM only with a real vmx/svm module: a `kvm_pvm` /dev/kvm runs only specially built guests."""
    real_kvm = any(Path(f"/sys/module/{m}").exists() for m in ("kvm_intel", "kvm_amd"))
    if real_kvm and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "max"]


def job_script(cmd: Sequence[str], cwd: str, env: Mapping[str, str], marker: str) -> str:
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    return f"""#!/bin/sh
echo '{marker}-START'
{exports}
cd {shlex.quote(cwd)} && {shlex.join(cmd)} </dev/null
rc=$?
echo "$rc" >{GUEST_JOB_DIR}/rc
echo "{marker}-EXIT=$rc"
echo b >/proc/sysrq-trigger
"""


def qemu_command(image: Image, job_dir: Path, memory_mb: int = 1024, cpus: int = 1) -> list[str]:
    # One vCPU: on a small shared host a second emulated CPU competes with the first one and with
    # QEMU's I/O thread; in trials here the boot was usually faster with one, and the tests are serial.
    disk = [] if image.python_disk is None else [
        "-drive", f"file={image.python_disk},format=raw,if=virtio,readonly=on"]
    return [
        QEMU, "-M", "pc", *accelerator(), "-smp", str(cpus), "-m", str(memory_mb),
        "-nodefaults", "-display", "none", "-no-reboot", "-nic", "none",
        "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
        "-kernel", str(image.kernel), "-initrd", str(image.initramfs), "-append", KERNEL_ARGS,
        "-fsdev", "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap",
        "-device", f"virtio-9p-pci,fsdev=hostroot,mount_tag={ROOT_TAG}",
        "-fsdev", f"local,id=job,path={job_dir},security_model=none",
        "-device", f"virtio-9p-pci,fsdev=job,mount_tag={JOB_TAG}",
        *disk,
    ]


def guest_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": GUEST_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        # The root is read-only: Python would try, and fail, to write bytecode for every module.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "TORTIE_IN_VM": "1",
        "TORTIE_VM_JOB_DIR": GUEST_JOB_DIR,
    }
    env.update(extra or {})
    return env


def run_in_vm(cmd: Sequence[str], *, cwd: str | Path = "/", env: Mapping[str, str] | None = None,
              timeout: float = 300, image: Image | None = None, job_dir: Path | None = None,
              on_line: Callable[[str], None] | None = None, memory_mb: int = 1024, cpus: int = 1) -> Result:
    """Boot, run `cmd` in `cwd`, and return once the guest is gone (or `timeout` seconds passed).

    `job_dir` (a host directory, made temporary when None) is what the guest sees at
    `$TORTIE_VM_JOB_DIR`; pass one to read what the command left there.
    """
    if shutil.which(QEMU) is None:
        raise VmError(f"{QEMU} not found (apt package qemu-system-x86)")
    image = image or ensure_image()
    if job_dir is None:
        with tempfile.TemporaryDirectory(prefix="tortie-vm-") as tmp:
            return run_in_vm(cmd, cwd=cwd, env=env, timeout=timeout, image=image, job_dir=Path(tmp),
                             on_line=on_line, memory_mb=memory_mb, cpus=cpus)
    marker = f"TORTIE-VM-{secrets.token_hex(6)}"
    (job_dir / JOB_SCRIPT).write_text(job_script(cmd, str(cwd), guest_env(env), marker))
    (job_dir / "rc").unlink(missing_ok=True)
    start = time.monotonic()
    deadline = start + timeout
    lines: list[str] = []
    boot: float | None = None
    returncode: int | None = None
    timed_out = False
    # Piped, never a file: QEMU writing to a regular file through /proc/self/fd interleaves badly.
    proc = subprocess.Popen(qemu_command(image, job_dir, memory_mb, cpus), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            pending = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not sel.select(timeout=left):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    if returncode is not None:
                        continue  # only the kernel's own goodbye follows the exit marker
                    line = raw.decode(errors="replace").replace("\r", "")
                    if line == f"{marker}-START":
                        boot = time.monotonic() - start
                        continue
                    if line.startswith(f"{marker}-EXIT="):
                        returncode = int(line.split("=", 1)[1])
                        continue
                    lines.append(line)
                    if on_line is not None:
                        on_line(line)
            if pending and returncode is None:
                # Also on a time-out: pytest's progress dots have no newline yet, and they say how far it got.
                lines.append(pending.decode(errors="replace").replace("\r", ""))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    if returncode is None and not timed_out:
        # The marker can be lost in the console FIFO at reset; the 9p write is synchronous.
        rc_file = job_dir / "rc"
        if rc_file.exists() and rc_file.read_text().strip().isdigit():
            returncode = int(rc_file.read_text())
    return Result(returncode, "\n".join(lines), boot, time.monotonic() - start, timed_out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=300, help="hard limit in seconds (default 300)")
    parser.add_argument("--cwd", default=os.getcwd(), help="directory to run in (default: this one)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    try:
        result = run_in_vm(args.command, cwd=args.cwd, env=env, timeout=args.timeout,
                           on_line=lambda line: print(line, flush=True))
    except Exception as exc:  # report any failure to boot as one line and a distinct code
        print(f"vm: {exc}", file=sys.stderr)
        return EXIT_VM_FAILED
    boot = f"{result.boot_seconds:.1f} s" if result.boot_seconds is not None else "never"
    print(f"vm: booted in {boot}, total {result.total_seconds:.1f} s", file=sys.stderr)
    if result.timed_out:
        print(f"vm: timed out after {args.timeout} s", file=sys.stderr)
        return EXIT_TIMEOUT
    if result.returncode is None:
        print("vm: the command never finished (guest crashed?)", file=sys.stderr)
        return EXIT_VM_FAILED
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
