"""One fuzz target under atheris (libFuzzer): `python -m fuzz.main TARGET [libFuzzer options] DIR...`.

The project's packages are instrumented for coverage feedback as the target imports them. Every
input that makes `check` raise is kept in FUZZ_FINDINGS (one per distinct exception type and
place, with its traceback beside it); with FUZZ_KEEP_GOING=1 the run goes on after a finding
(a campaign collects them all), otherwise it stops there (libFuzzer writes the crash artifact).

`python -m fuzz.main TARGET --replay FILE|DIR ...` runs inputs through `check` without atheris
(regressions, and line coverage with coverage.py): exit 1 if any raised.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from fuzz.oracle import Rejected
from fuzz.targets import TARGETS

INSTRUMENTED = ["proto", "bgpd", "datastore"]


def signature(exc: BaseException) -> str:
    """Exception type and the innermost frame inside the project: one finding, however many inputs."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = [f for f in frames if "/fuzz/" not in f.filename] or frames
    last = here[-1] if here else None
    place = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
    return f"{type(exc).__name__}@{place}"


def recording(check: Callable[[bytes], None], findings: Path | None, keep_going: bool) -> Callable[[bytes], None]:
    seen: set[str] = set()

    def one_input(data: bytes) -> None:
        try:
            check(data)
        except Rejected:
            return
        except Exception as exc:
            sig = signature(exc)
            if findings is not None and sig not in seen:
                seen.add(sig)
                findings.mkdir(parents=True, exist_ok=True)
                stem = hashlib.sha1(sig.encode()).hexdigest()[:12]
                if not (findings / f"{stem}.txt").exists():
                    (findings / f"{stem}.bin").write_bytes(data)
                    (findings / f"{stem}.txt").write_text(
                        f"{sig}\ninput: {data!r}\n\n" + "".join(traceback.format_exception(exc)))
                print(f"FINDING {sig} -> {findings / stem}.bin", file=sys.stderr, flush=True)
            if not keep_going:
                raise

    return one_input


def replay(check: Callable[[bytes], None], paths: list[str]) -> int:
    files = [f for p in map(Path, paths) for f in (sorted(p.iterdir()) if p.is_dir() else [p]) if f.is_file()]
    bad = 0
    for f in files:
        try:
            check(f.read_bytes())
        except Rejected:
            pass
        except Exception as exc:
            bad += 1
            print(f"{f}: {signature(exc)}: {exc}", file=sys.stderr)
    print(f"replayed {len(files)} inputs, {bad} raised", file=sys.stderr)
    return 1 if bad else 0


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(f"usage: python -m fuzz.main TARGET [options]; targets: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    name, rest = sys.argv[1], sys.argv[2:]
    if rest[:1] == ["--replay"]:
        from fuzz.targets import load

        return replay(load(name).check, rest[1:])

    import atheris

    # the code under test logs every NOTIFICATION and bad frame: millions of lines, none read
    logging.disable(logging.CRITICAL)
    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz.targets import load

        target = load(name)
    findings = os.environ.get("FUZZ_FINDINGS")
    one_input = recording(target.check, Path(findings) if findings else None,
                          os.environ.get("FUZZ_KEEP_GOING") == "1")
    # libFuzzer's merge re-runs argv[0] with the options: the runner gives it an executable for this target
    atheris.Setup([os.environ.get("FUZZ_ARGV0", sys.argv[0]), *rest], one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
