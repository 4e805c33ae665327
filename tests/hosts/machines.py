"""Debian 12 hosts with real systemd as PID 1, booted by systemd-nspawn on the lab's network namespaces.

One base root file system (mmdebstrap, minbase bookworm plus systemd and what the package depends
on) is built once and cached; every host boots an overlay of it (the base stays read-only, each host
writes to its own upper directory), joins its namespace from `lab.topology` with
`--network-namespace-path`, and so sees the fabric, its veths and its pods' veths exactly as a lab
host does. Commands run inside a host through `nsenter` into its PID 1's namespaces
(/work/shared/lab/SYSTEMD.md has the facts this relies on).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("TORTIE_HOSTS_MIRROR", "http://deb.debian.org/debian")
# What a host has before the .deb: systemd as init, and the package's dependencies (the hosts have no
# route to a mirror, so apt can only install the .deb when these are already there).
PACKAGES = ("systemd", "systemd-sysv", "dbus", "iproute2", "nftables", "python3.11", "libyaml-0-2",
            "procps", "passwd", "ca-certificates")
# Units a minimal bookworm enables that have no business in a test host.
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
          "e2scrub_reap.service", "fstrim.timer", "getty@tty1.service", "console-getty.service",
          "systemd-pstore.service")
IMAGE_VERSION = "1"  # bump when the recipe below changes
CACHE = Path(os.environ.get("TORTIE_HOSTS_CACHE", "/var/cache/tortie-hosts"))
PATH_INSIDE = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HostError(RuntimeError):
    pass


def image_key() -> str:
    recipe = "\n".join([IMAGE_VERSION, SUITE, *PACKAGES, *MASKED])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def base_image(log: Path | None = None) -> Path:
    """The cached base root for this recipe; built (a few minutes) when missing. Safe to call from
    several processes at once: one builds, the others wait for it."""
    root = CACHE / f"{SUITE}-{image_key()}"
    stamp = root / ".tortie-image-complete"
    if stamp.exists():
        return root
    with _locked(CACHE / ".build.lock"):
        if stamp.exists():
            return root
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = ["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR]
        with open(log or os.devnull, "ab") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=1200)
        if proc.returncode != 0:
            raise HostError(f"mmdebstrap failed ({proc.returncode}); see {log}")
        _customise(tmp)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        stamp.write_text(f"{SUITE} {' '.join(PACKAGES)}\n")
    return root


def _customise(root: Path) -> None:
    system = root / "etc/systemd/system"
    for unit in MASKED:
        target = system / unit
        for wants in system.glob(f"*.wants/{unit}"):
            wants.unlink()
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to("/dev/null")
    # each host gets its own name (nspawn --hostname) and machine id
    (root / "etc/hostname").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    # a test host logs to memory, and quickly
    conf = root / "etc/systemd/journald.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "tortie-hosts.conf").write_text("[Journal]\nStorage=volatile\nRateLimitBurst=0\n")


def _descendants_pid1(nspawn_pid: int) -> int | None:
    """The host's PID 1: the process below nspawn that is PID 1 in its own PID namespace."""
    seen: list[int] = [nspawn_pid]
    while seen:
        pid = seen.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            if len(nspid) > 1 and nspid[-1] == "1":
                return child
            seen.append(child)
    return None


class Machine:
    """One booted host. `run` executes inside it (all of PID 1's namespaces, a clean environment)."""

    def __init__(self, name: str, netns: str, image: Path, workdir: Path,
                 binds: Sequence[tuple[Path, str]] = ()) -> None:
        self.name = name
        self.netns = netns
        self.image = image
        self.dir = workdir / name
        self.root = self.dir / "root"
        self.binds = list(binds)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1: int | None = None

    # ---------------------------------------------------------------- life cycle

    def boot(self) -> None:
        for d in ("upper", "work", "root"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={self.image},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}",
                        str(self.root)], check=True, capture_output=True)
        cmd = ["systemd-nspawn", "--quiet", "-D", str(self.root), "--boot", "--register=no", "--keep-unit",
               f"--machine={self.netns}", f"--hostname={self.name}",
               f"--network-namespace-path=/run/netns/{self.netns}", "--console=passive",
               # A container joined to a namespace this way does not get CAP_NET_ADMIN in its bounding
               # set (nspawn adds it only for networks it makes itself); a real host has it, and
               # without it no unit inside could create a device, whatever the unit says.
               "--capability=CAP_NET_ADMIN"]
        cmd += [f"--bind-ro={src}:{dst}" for src, dst in self.binds]
        with open(self.dir / "console.log", "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait_running(self, timeout: float = 90.0) -> float:
        """Until `systemctl is-system-running` says running (or degraded: reported by the caller)."""
        assert self.proc is not None
        t0 = time.monotonic()
        deadline = t0 + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HostError(f"{self.name}: nspawn exited {self.proc.returncode}: {self.console()[-2000:]}")
            if self.pid1 is None:
                self.pid1 = _descendants_pid1(self.proc.pid)
            if self.pid1 is not None:
                state = self.run("systemctl", "is-system-running", check=False, timeout=30).stdout.strip()
                if state in ("running", "degraded"):
                    return time.monotonic() - t0
            time.sleep(0.2)
        raise HostError(f"{self.name}: not booted after {timeout:.0f} s (state {state!r})")

    def console(self) -> str:
        try:
            return (self.dir / "console.log").read_text(errors="replace")
        except OSError:
            return ""

    def shutdown(self, timeout: float = 30.0) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            if self.pid1 is not None:
                self.run("systemctl", "poweroff", "--no-block", check=False, timeout=15)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.proc = None
        self.pid1 = None
        for _ in range(50):
            if subprocess.run(["umount", str(self.root)], capture_output=True).returncode == 0 \
                    or not os.path.ismount(self.root):
                break
            time.sleep(0.1)

    # ---------------------------------------------------------------- using it

    def argv(self, *cmd: str, env: dict[str, str] | None = None) -> list[str]:
        if self.pid1 is None:
            raise HostError(f"{self.name} is not running")
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        return ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", f"PATH={PATH_INSIDE}", "LANG=C.UTF-8",
                "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "TERM=dumb", *extra, *cmd]

    def run(self, *cmd: str, check: bool = True, timeout: float = 120, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*cmd, env=env), capture_output=True, text=True, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise HostError(f"{self.name}: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def sh(self, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-ec", script, check=check, timeout=timeout)

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self, unit: str) -> int:
        """The unit's main process as the host sees it (its own PID namespace)."""
        return int(self.show(unit, "MainPID")["MainPID"])

    def write(self, path: str, text: str, mode: str = "0644", owner: str = "root:root") -> None:
        self.run("sh", "-ec", f'umask 077; cat > "$0"; chown {owner} "$0"; chmod {mode} "$0"', path, input=text)

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout

    def journal(self, *args: str) -> str:
        return self.run("journalctl", "--no-pager", *args, check=False).stdout
