"""The VM tier's own parts, without booting: initramfs archive, module order, kernel choice, reports."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from scripts.vm import image as vm_image
from scripts.vm.image import Cpio, ImageError, KernelUnavailable, _has_pvh_entry, boot_modules, kernel_version
from scripts.vm.run import job_script
from tests.vm.conftest import Case, TierRun, _parse_junit


def test_cpio_archive_is_read_back_by_cpio(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("missing tools: cpio")
    archive = Cpio()
    archive.directory("bin")
    archive.file("bin/hello", b"odd length!", 0o755)
    archive.symlink("bin/sh", "hello")
    archive.char_device("console", 5, 1)
    data = archive.finish()
    assert len(data) % 512 == 0
    listing = subprocess.run(["cpio", "-itv"], input=data, capture_output=True, check=True).stdout.decode()
    rows = [line.split() for line in listing.splitlines()]
    assert [r[0][0] for r in rows] == ["d", "-", "l", "c"]
    assert [r[-1] for r in rows[:2]] == ["bin", "bin/hello"]
    assert rows[2][-3:] == ["bin/sh", "->", "hello"]
    subprocess.run(["cpio", "-id", "bin/hello"], input=data, cwd=tmp_path, capture_output=True, check=True)
    assert (tmp_path / "bin/hello").read_bytes() == b"odd length!"


def _modules_tree(tmp_path: Path) -> Path:
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n")
    (tmp_path / "modules.builtin").write_text("kernel/fs/overlayfs/overlay.ko\n")
    return tmp_path


def test_boot_modules_load_dependencies_first_and_once(tmp_path: Path) -> None:
    modules = _modules_tree(tmp_path)
    order = [p.name for p in boot_modules(modules, ("9pnet_virtio", "9p", "overlay"))]
    assert order == ["9pnet.ko", "virtio_ring.ko", "9pnet_virtio.ko", "netfs.ko", "9p.ko"]


def test_boot_modules_refuse_a_module_the_kernel_lacks(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="vsock"):
        boot_modules(_modules_tree(tmp_path), ("vsock",))


def test_kernel_version_follows_the_metapackage(monkeypatch: pytest.MonkeyPatch) -> None:
    out = "linux-image-amd64\n  Depends: linux-image-6.1.0-99-amd64\n"
    monkeypatch.setattr(vm_image.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=out, stderr=""))
    monkeypatch.setattr(vm_image.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert kernel_version() == "6.1.0-99-amd64"


def test_kernel_version_unknown_package_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm_image.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 100, stdout="", stderr="E: No packages found"))
    monkeypatch.setattr(vm_image.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    with pytest.raises(KernelUnavailable, match="No packages found"):
        kernel_version()


def _elf_with_note(note_type: int) -> bytes:
    name = b"Xen\x00"
    note = struct.pack("<III", len(name), 4, note_type) + name + b"\0\0\0\0"
    phoff, note_off = 64, 64 + 56
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, phoff, 0, 0,
                                                               64, 56, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note), len(note), 4)
    return header + phdr + note


def test_pvh_entry_note_is_recognised() -> None:
    assert _has_pvh_entry(_elf_with_note(18))
    assert not _has_pvh_entry(_elf_with_note(17))
    assert not _has_pvh_entry(b"MZ not an elf")


def test_job_script_quotes_the_command_and_reports_its_exit() -> None:
    script = job_script(["sh", "-c", "echo 'a b'; exit 3"], "/work dir", {"X": "1 2"}, "M")
    assert "cd '/work dir' && sh -c 'echo '\"'\"'a b'\"'\"'; exit 3' </dev/null" in script
    assert "export X='1 2'" in script
    assert script.index("M-START") < script.index("M-EXIT=$rc") < script.index("sysrq-trigger")


def test_junit_report_is_split_per_in_vm_module(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text("""<?xml version="1.0"?><testsuites><testsuite>
<testcase classname="tests.vm.inside.test_ipip" name="test_ok"/>
<testcase classname="tests.vm.inside.test_ipip" name="test_bad"><failure message="boom">trace</failure></testcase>
<testcase classname="tests.vm.inside.test_ipip_more.TestX" name="test_skip"><skipped message="why"/></testcase>
</testsuite></testsuites>""")
    cases = _parse_junit(junit)
    run = TierRun(image=None, result=None, cases=cases)  # type: ignore[arg-type]
    assert run.module_cases("test_ipip") == [
        Case("tests.vm.inside.test_ipip::test_ok", "passed"),
        Case("tests.vm.inside.test_ipip::test_bad", "failed", "boom\ntrace")]
    assert [c.outcome for c in run.module_cases("test_ipip_more")] == ["skipped"]


def test_qemu_command_takes_memory_and_cpus(tmp_path: Path) -> None:
    from scripts.vm.image import Image
    from scripts.vm.run import qemu_command

    image = Image("6.1.0-99-amd64", tmp_path / "vmlinux", tmp_path / "initramfs", tmp_path / "modules")
    cmd = qemu_command(image, tmp_path, memory_mb=1536, cpus=2)
    assert cmd[cmd.index("-smp") + 1] == "2" and cmd[cmd.index("-m") + 1] == "1536"
    assert "-nic" in cmd and cmd[cmd.index("-nic") + 1] == "none"  # still no network card


def test_demo_vm_estimate_follows_the_runs_recorded_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.vm import steps

    monkeypatch.setattr(steps, "TIMES", tmp_path / "times.json")
    monkeypatch.setattr(steps, "accelerator", lambda: ["-accel", "tcg", "-cpu", "max"])
    seconds, basis = steps.estimate()
    assert seconds > 0 and "emulation" in basis  # nothing recorded yet: the default guess, said as such
    for s in (500.0, 300.0, 420.0):
        steps._record(s)
    seconds, basis = steps.estimate()
    assert seconds == 420.0 and "5.0 to 8.3 min" in basis and "last 3 runs" in basis


def test_demo_vm_guest_command_runs_the_steps_with_this_interpreter() -> None:
    import sys

    from scripts.vm.steps import guest_command

    assert guest_command("/run/tortie-vm/run.json") == [sys.executable, "-m", "scripts.vm.steps", "--guest",
                                                        "--out", "/run/tortie-vm/run.json"]
