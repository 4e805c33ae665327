"""Pod-to-pod traffic between every pair of a lab's pods, every probe counted (lab.prober in each pod).

`ProbeMatrix.start()` runs one prober per pod, aimed at every other pod, and reads their output in a
thread: per ordered pair (source, target) the probes sent and answered, the send time of every lost
probe, and the time up to which every probe is resolved. The chaos asks it how many probes were lost
in a window and waits on it (polling with a deadline) until every pair has resolved a stretch of
time with nothing lost.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import field

from lab.topology import LabTopology, Pod
from proto.record import record

PORT = 7007


@record
class PairStats:
    sent: int = 0
    acked: int = 0
    resolved_through: float = 0.0
    losses: list[float] = field(default_factory=list)  # send times (monotonic) of lost probes


class ProbeMatrix:
    def __init__(self, topo: LabTopology, pods: list[Pod], rate: float = 25.0, timeout: float = 1.0) -> None:
        self.topo = topo
        self.pods = pods
        self.rate = rate
        self.timeout = timeout
        self.pairs: dict[tuple[str, str], PairStats] = {
            (a.name, b.name): PairStats() for a in pods for b in pods if a is not b}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.procs: list[subprocess.Popen[str]] = []
        self.ready: set[str] = set()
        self.errors: list[str] = []
        self.started = 0.0

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def start(self, timeout: float = 30.0) -> None:
        self.started = time.monotonic()
        for pod in self.pods:
            targets = [f"{b.name}={b.ip}" for b in self.pods if b is not pod]
            argv = ["ip", "netns", "exec", self.topo.ns(pod.name).name, sys.executable, "-m", "lab.prober",
                    "--port", str(PORT), "--rate", str(self.rate), "--timeout", str(self.timeout), *targets]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            self.procs.append(proc)
            self.topo.state.pids[f"prober-{pod.name}"] = proc.pid
            threading.Thread(target=self._read, args=(pod.name, proc), daemon=True).start()
        self.topo.state.save(self.topo.state_dir)
        if not self.wait(lambda: len(self.ready) == len(self.pods), timeout):
            raise RuntimeError(f"probers not ready after {timeout} s: {self.errors or 'no output'}")

    def _read(self, src: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            with self.changed:
                if parts[:1] == ["READY"]:
                    self.ready.add(src)
                elif parts[:1] == ["L"] and len(parts) == 4:
                    self.pairs[(src, parts[1])].losses.append(float(parts[3]))
                elif parts[:1] == ["T"] and len(parts) == 5:
                    st = self.pairs[(src, parts[1])]
                    st.resolved_through, st.sent, st.acked = float(parts[2]), int(parts[3]), int(parts[4])
                self.changed.notify_all()
        err = proc.stderr.read() if proc.stderr else ""
        with self.changed:
            self.errors.append(f"prober in {src} exited {proc.wait()}: {err.strip()[-500:]}")
            self.changed.notify_all()

    def wait(self, check: object, timeout: float) -> bool:
        """Wait on the probers' output until `check()` holds (checked under the lock) or the deadline."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not check():  # type: ignore[operator]
                left = deadline - time.monotonic()
                if left <= 0 or self.errors:
                    return bool(check())  # type: ignore[operator]
                self.changed.wait(min(left, 0.5))
        return True

    # ---------------------------------------------------------------- questions (take the lock)

    def resolved_through(self) -> float:
        with self.lock:
            return min(st.resolved_through for st in self.pairs.values())

    def losses(self, start: float, end: float = float("inf")) -> dict[tuple[str, str], list[float]]:
        """Send times of the probes lost per pair, sent in [start, end)."""
        with self.lock:
            return {pair: [t for t in st.losses if start <= t < end] for pair, st in self.pairs.items()}

    def last_loss(self, start: float) -> float | None:
        with self.lock:
            times = [t for st in self.pairs.values() for t in st.losses if t >= start]
        return max(times) if times else None

    def totals(self) -> tuple[int, int, int]:
        """(sent, answered, lost) over every pair so far."""
        with self.lock:
            return (sum(st.sent for st in self.pairs.values()), sum(st.acked for st in self.pairs.values()),
                    sum(len(st.losses) for st in self.pairs.values()))

    def whole_for(self, since: float, quiet: float) -> bool:
        """Every pair has resolved [since, since + quiet] and lost nothing sent at or after `since`
        (call under the lock: for `wait`)."""
        return all(st.resolved_through >= since + quiet and not (st.losses and st.losses[-1] >= since)
                   for st in self.pairs.values())

    def wait_whole(self, after: float, quiet: float, timeout: float) -> float | None:
        """Wait until every pair has gone `quiet` seconds without a loss, counting from `after` or
        from the last loss sent after it; returns the send time of that last loss (or `after` when
        there was none), or None when the matrix was not whole within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            last = self.last_loss(after)
            since = after if last is None else last + self.interval
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            settled = self.wait(lambda since=since: self.whole_for(since, quiet) or self._new_loss(since), left)
            if settled and self.last_loss(after) == last:
                return after if last is None else last
            if self.errors:
                raise RuntimeError("; ".join(self.errors))

    def _new_loss(self, since: float) -> bool:
        return any(st.losses and st.losses[-1] >= since for st in self.pairs.values())

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
