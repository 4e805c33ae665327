"""Debian's kernel, a tiny busybox initramfs and a Python disk for the VM tier, cached in `.deps/vm/`.

The kernel is whatever `linux-image-amd64` currently depends on (never a hard-coded version): its
package is fetched with `apt-get download`, unpacked with `dpkg-deb -x` and indexed with `depmod -b`,
which takes seconds, where installing it would rebuild initramfs images for a minute. Its ELF
vmlinux is extracted so that QEMU can skip the slow emulated decompressor. The initramfs holds only
static busybox, the modules that reach the host's root over virtio-9p and the Python disk, and
`/init`; the guest's userland is the host's own, shared read-only, so the venv works unchanged.
`docs/vm-tier.md` has the whole picture.

Run as a script (`.venv/bin/python scripts/vm/image.py`) it prepares the cache and prints the paths.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".deps" / "vm"
METAPACKAGE = "linux-image-amd64"
BUSYBOX = Path("/bin/busybox")

# What /init needs to mount the host's root; the closure over modules.dep adds virtio, netfs and so on.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_blk", "crc32c_generic", "ext4")

# Python's own trees (stdlib, the venv's site-packages) go to the guest as a read-only ext4 disk
# bound over the same paths: on 9p every module import costs several round trips to QEMU, and the
# guest sat idle waiting for them most of the time. Top-level stdlib entries the tests never import
# are left out (the interpreter's own site-packages is not on the venv's path).
STDLIB_SKIP = frozenset({"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                         "lib2to3", "__phello__"})
PYTHON_DISK = "/dev/vda"

# 9p tags shared by `run`: the host's `/` (read-only) and the per-run job directory (read-write).
ROOT_TAG = "hostroot"
JOB_TAG = "job"
GUEST_JOB_DIR = "/run/tortie-vm"
JOB_SCRIPT = "job.sh"
# Trees of the read-only host root that get a tmpfs overlay in the guest (`lib` is `usr/lib`).
WRITABLE = ("var", "root", "usr/lib")


class ImageError(RuntimeError):
    pass


class KernelUnavailable(ImageError):
    """The kernel package cannot be had here: no apt, no network to the mirror, or no such package."""


@dataclass(frozen=True)
class Image:
    version: str  # e.g. "6.1.0-56-amd64"
    kernel: Path  # uncompressed vmlinux (PVH entry) when it could be extracted, else the vmlinuz
    initramfs: Path
    modules: Path  # lib/modules/<version> of the extraction, bound to /lib/modules/<version> in the guest
    python_disk: Path | None = None  # ext4 image of `python_trees` (None: they come over 9p)
    python_trees: tuple[Path, ...] = ()


def kernel_version(metapackage: str = METAPACKAGE) -> str:
    """The version of the kernel image the metapackage depends on now, e.g. `6.1.0-56-amd64`."""
    if shutil.which("apt-cache") is None:
        raise KernelUnavailable("apt-cache not found: not a Debian-like system")
    proc = subprocess.run(["apt-cache", "depends", metapackage], capture_output=True, text=True, timeout=60)
    found = re.search(r"^\s*\|?Depends:\s*linux-image-(\S+-amd64)\s*$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or found is None:
        raise KernelUnavailable(f"apt-cache depends {metapackage} names no kernel image: "
                                f"{(proc.stderr or proc.stdout).strip()[:300]}")
    return found.group(1)


def _modules_dir(root: Path, version: str) -> Path:
    # Debian ships modules in lib/; newer releases (usrmerge) may ship them in usr/lib/.
    for base in ("lib", "usr/lib"):
        path = root / base / "modules" / version
        if path.is_dir():
            return path
    raise ImageError(f"no modules directory for {version} under {root}")


def _download(version: str, into: Path) -> Path:
    package = f"linux-image-{version}"
    # Fail fast without a mirror instead of apt's minutes of retries.
    cmd = ["apt-get", "download", "-q", "-o", "Acquire::Retries=1", "-o", "Acquire::http::Timeout=30", package]
    for attempt in range(2):
        proc = subprocess.run(cmd, cwd=into, capture_output=True, text=True, timeout=900)
        debs = sorted(into.glob(f"{package}_*.deb"))
        if proc.returncode == 0 and debs:
            return debs[-1]
        # Stale package lists name a file the mirror has dropped (404): refresh them once (root only).
        if attempt == 0 and " 404 " in proc.stderr and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
            continue
        break
    raise KernelUnavailable(f"apt-get download {package} failed: {proc.stderr.strip()[-300:]}")


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def fetch_kernel(version: str, cache: Path = CACHE) -> Path:
    """The extracted kernel package for `version` (its root directory), fetching it when missing."""
    root = cache / version / "root"
    if (root / ".complete").exists():
        return root
    for tool in ("apt-get", "dpkg-deb", "depmod"):
        if shutil.which(tool) is None:
            raise KernelUnavailable(f"{tool} not found")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        deb = _download(version, Path(tmp))
        staging = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True, timeout=600)
        deb.unlink()
        subprocess.run(["depmod", "-b", str(staging), version], check=True, capture_output=True, timeout=300)
        _modules_dir(staging, version)
        (staging / ".complete").touch()
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(root)
    return root


def _version_key(version: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", version)]


def _cached_versions(cache: Path) -> list[str]:
    """Kernels already extracted, oldest first (6.1.0-9 before 6.1.0-56)."""
    return sorted((p.parent.parent.name for p in cache.glob("*/root/.complete")), key=_version_key)


def _prune(cache: Path, keep: str) -> None:
    """Remove extractions of older kernels (400 MB each): only what this module put there."""
    for version in _cached_versions(cache):
        if version != keep:
            shutil.rmtree(cache / version, ignore_errors=True)


def boot_modules(modules: Path, names: tuple[str, ...] = BOOT_MODULES) -> list[Path]:
    """Module files for `names` and everything they depend on, dependencies first (insmod order)."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[re.sub(r"\.ko(\..*)?$", "", Path(path).name).replace("-", "_")] = path
    builtin = {re.sub(r"\.ko$", "", Path(p).name).replace("-", "_")
               for p in (modules / "modules.builtin").read_text().split()}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in names:
        key = name.replace("-", "_")
        if key in by_name:
            visit(by_name[key])
        elif key not in builtin:
            raise ImageError(f"kernel module {name} is neither a module nor built in")
    return [modules / p for p in order]


XEN_ELFNOTE_PHYS32_ENTRY = 18


def _has_pvh_entry(elf: bytes) -> bool:
    """Whether an ELF64 kernel carries Xen's PVH entry note, without which QEMU cannot start it."""
    if not elf.startswith(b"\x7fELF\x02\x01"):
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz]
            if name == b"Xen\x00" and note_type == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def uncompressed_kernel(vmlinuz: Path, out: Path) -> Path:
    """The ELF vmlinux inside an xz-compressed bzImage, or `vmlinuz` itself when it is not one.

    Under software emulation the bzImage's own decompressor takes 5 s before the kernel prints a
    line; QEMU boots the ELF directly through its PVH entry (CONFIG_PVH) in a fraction of that.
    """
    if out.exists() and out.stat().st_mtime_ns >= vmlinuz.stat().st_mtime_ns:
        return out
    import lzma
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        return vmlinuz
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError:
        return vmlinuz
    if not _has_pvh_entry(elf):
        return vmlinuz
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(elf)
    tmp.rename(out)
    return out


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    # busybox insmod takes plain ELF only; decompress the way the kernel package may ship them.
    if path.suffix == ".xz":
        import lzma
        return lzma.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    if path.suffix == ".gz":
        import gzip
        return gzip.decompress(data)
    return data


class Cpio:
    """A `newc` cpio archive, the format the kernel unpacks as its initramfs."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._parts.append(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
        self._parts.append(data + b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = b"".join(self._parts)
        return data + b"\0" * (-len(data) % 512)


def python_trees() -> list[Path]:
    """The running interpreter's stdlib and site-packages (the venv's when run from it)."""
    paths = sysconfig.get_paths()
    trees: list[Path] = []
    for key in ("stdlib", "purelib", "platlib"):
        path = Path(paths[key])
        if path.is_dir() and path not in trees:
            trees.append(path)
    # a tree inside another would be hidden by the outer bind; keep the outer one only
    return [t for t in trees if not any(o != t and o in t.parents for o in trees)]


def _tree_files(tree: Path, skip: frozenset[str]) -> Iterator[tuple[Path, os.stat_result]]:
    for top in sorted(tree.iterdir()):
        if top.name in skip or top.name.startswith("config-"):
            continue
        if top.is_symlink() or not top.is_dir():
            yield top, top.lstat()
            continue
        for root, dirs, files in os.walk(top):
            dirs.sort()
            yield Path(root), Path(root).lstat()
            for name in sorted(files):
                path = Path(root) / name
                yield path, path.lstat()


def _skip_for(tree: Path) -> frozenset[str]:
    return STDLIB_SKIP if tree == Path(sysconfig.get_paths()["stdlib"]) else frozenset()


def build_python_disk(trees: list[Path], out: Path) -> Path | None:
    """An ext4 image with `trees` as top-level directories 0, 1, ...; rebuilt when any file changed.

    None when mkfs.ext4 is missing: the guest then imports everything over 9p, only slower.
    """
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mke2fs")
    if mkfs is None:
        return None
    listing = [(i, tree, list(_tree_files(tree, _skip_for(tree)))) for i, tree in enumerate(trees)]
    digest = hashlib.sha256()
    blocks = 0
    for i, _tree, entries in listing:
        for path, st in entries:
            digest.update(f"{i}\0{path}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            blocks += 1 + st.st_size // 4096
    stamp = digest.hexdigest()
    stamp_file = out.with_suffix(".stamp")
    if out.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return out
    out.unlink(missing_ok=True)  # a stale disk must never be used, even if the rebuild fails
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".python-") as tmp:
        stage = Path(tmp) / "stage"
        for i, tree, entries in listing:
            for path, st in entries:
                target = stage / str(i) / path.relative_to(tree)
                if stat.S_ISDIR(st.st_mode):
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if stat.S_ISLNK(st.st_mode):
                    target.symlink_to(os.readlink(path))
                elif stat.S_ISREG(st.st_mode):
                    try:
                        os.link(path, target)  # same file system: no copy
                    except OSError:
                        shutil.copy2(path, target)
        size_mb = blocks * 4096 * 5 // 4 // (1 << 20) + 64
        tmp_image = Path(tmp) / "python.ext4"
        # No journal and no metadata checksums: nothing writes to it.
        proc = subprocess.run([mkfs, "-q", "-F", "-t", "ext4", "-b", "4096", "-O",
                               "^has_journal,^metadata_csum", "-E", "root_owner=0:0", "-L", "tortie-python",
                               "-d", str(stage), str(tmp_image), f"{size_mb}M"],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            print(f"vm image: no Python disk, the guest imports over 9p: {proc.stderr.strip()[-300:]}",
                  file=sys.stderr)
            return None
        tmp_image.rename(out)
    stamp_file.write_text(stamp)
    return out


def _scratch_mount(name: str, mode: str) -> str:
    """The guest's own /run and /tmp: empty tmpfs, unless the checkout itself lives there (a CI
    clone under /tmp): then a tmpfs overlay, so the guest still sees the repository."""
    if REPO.is_relative_to(f"/{name}"):
        return (f"mkdir -p /rw/{name}/upper /rw/{name}/work && mount -t overlay -o lowerdir=/newroot/{name},"
                f"upperdir=/rw/{name}/upper,workdir=/rw/{name}/work overlay /newroot/{name} "
                f"|| fail 'overlay on /{name}'")
    return f"mount -t tmpfs -o mode={mode} tmpfs /newroot/{name}"


def init_script(version: str, modules: Path, module_files: list[Path], trees: tuple[Path, ...] = ()) -> str:
    """`/init`: load the 9p modules, mount the host's root, hand over to the job script.

    The root stays plain 9p: an overlay over all of it costs a round trip to the host per lookup for
    its own metadata, which made Python's imports several times slower. Only the few trees written
    to get a tmpfs overlay. The host's `/lib/modules` has nothing for this kernel, so the
    extraction's modules are bound there (hence the overlay on /usr/lib) and `modprobe ipip`, or the
    kernel's own module requests, work as on an installed system.
    """
    overlays = "\n".join(
        f"mkdir -p /rw/{i}/upper /rw/{i}/work && mount -t overlay -o lowerdir=/newroot/{d},"
        f"upperdir=/rw/{i}/upper,workdir=/rw/{i}/work overlay /newroot/{d} || fail 'overlay on /{d}'"
        for i, d in enumerate(WRITABLE))
    inserts = "\n".join(f"insmod /modules/{p.name} || fail 'insmod {p.name}'" for p in module_files)
    scratch = "\n".join(_scratch_mount(d, mode) for d, mode in (("run", "0755"), ("tmp", "1777")))
    python = ""
    if trees:
        binds = "\n".join(f"mount --bind /python/{i} /newroot{tree} || fail 'bind {tree}'"
                          for i, tree in enumerate(trees))
        python = f"""mkdir -p /python
n=0; while [ ! -b {PYTHON_DISK} ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done
mount -t ext4 -o ro,noload {PYTHON_DISK} /python || fail 'mount python disk'
{binds}"""
    return f"""#!/bin/sh
export PATH=/bin
fail() {{ echo "tortie-vm: init: $1" >/dev/console; echo o >/proc/sysrq-trigger; sleep 5; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo 1 >/proc/sys/kernel/sysrq
{inserts}
mkdir -p /rw /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=512000 {ROOT_TAG} /newroot \\
  || fail 'mount host root'
mount -t tmpfs -o mode=0755 tmpfs /rw
{overlays}
{python}
{scratch}
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mkdir -p /newroot/lib/modules/{version}
mount --bind /newroot{modules} /newroot/lib/modules/{version} || fail 'bind modules'
mkdir -p /newroot{GUEST_JOB_DIR}
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {JOB_TAG} /newroot{GUEST_JOB_DIR} \\
  || fail 'mount job directory'
exec switch_root /newroot /bin/sh {GUEST_JOB_DIR}/{JOB_SCRIPT}
fail 'switch_root'
"""


def build_initramfs(version: str, root: Path, out: Path, trees: tuple[Path, ...] = ()) -> Path:
    """Write the initramfs to `out` unless an identical one is there already."""
    modules = _modules_dir(root, version)
    module_files = boot_modules(modules)
    init = init_script(version, modules, module_files, trees)
    stamp = hashlib.sha256(init.encode() + str(BUSYBOX.stat().st_mtime_ns).encode()).hexdigest()
    stamp_file = out.with_suffix(".stamp")
    if out.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return out
    archive = Cpio()
    for directory in ("bin", "dev", "proc", "sys", "modules"):
        archive.directory(directory)
    # The kernel opens /dev/console for init's stdio before anything is mounted.
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in ("sh", "mount", "mkdir", "insmod", "switch_root", "echo", "sleep"):
        archive.symlink(f"bin/{applet}", "busybox")
    for path in module_files:
        archive.file(f"modules/{path.name.split('.ko')[0]}.ko", _read_module(path))
    archive.file("init", init.encode(), 0o755)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(archive.finish())
    tmp.rename(out)
    stamp_file.write_text(stamp)
    return out


def ensure_image(cache: Path = CACHE, python: bool = True) -> Image:
    """The current Debian kernel and its initramfs, fetched and built when missing.

    With `python`, the running interpreter's trees are put on a disk image for the guest (see
    STDLIB_SKIP); without, the guest reads them over 9p like everything else.

    Without apt or the mirror, the newest kernel already in the cache is used; with neither,
    `KernelUnavailable` says why (the VM tier skips on it).
    """
    if not BUSYBOX.exists():
        raise ImageError(f"{BUSYBOX} missing (apt package busybox-static)")
    with _locked(cache):
        try:
            version = kernel_version()
            root = fetch_kernel(version, cache)
            _prune(cache, keep=version)
        except KernelUnavailable:
            cached = _cached_versions(cache)
            if not cached:
                raise
            version = cached[-1]
            root = cache / version / "root"
        kernel = root / "boot" / f"vmlinuz-{version}"
        if not kernel.exists():
            raise ImageError(f"{kernel} missing from the kernel package")
        kernel = uncompressed_kernel(kernel, cache / version / "vmlinux")
        trees = tuple(python_trees()) if python else ()
        disk = build_python_disk(list(trees), cache / "python.ext4") if trees else None
        trees = trees if disk is not None else ()
        initramfs = build_initramfs(version, root, cache / version / "initramfs.cpio", trees)
        return Image(version, kernel, initramfs, _modules_dir(root, version), disk, trees)


def main() -> int:
    try:
        image = ensure_image()
    except ImageError as exc:
        print(f"vm image: {exc}", file=sys.stderr)
        return 1
    print(f"version   {image.version}\nkernel    {image.kernel}\ninitramfs {image.initramfs}\n"
          f"python    {image.python_disk or 'over 9p'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
