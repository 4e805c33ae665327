"""Chaos under traffic: faults injected one at a time into a running lab while every pair of pods
exchanges probes (lab.probe_matrix), each event's lost probes and time to a whole matrix recorded.

Events (`KINDS`), each on one host (or one etcd member):

- `bgpd-kill` / `felixd-kill`: SIGKILL, then started again at once (as systemd's Restart= would);
  `bgpd-term` / `felixd-term`: SIGTERM, wait for the exit, start again. Done when the restarted
  daemon's /readiness answers 200.
- `link-flap`: the host's uplink (its port on the fabric's bridge) down for 2 s and up again: the
  host sees its carrier go, as when a cable or a switch port goes, and keeps its addresses and routes.
- `bad-config`: the lab's cluster file replaced by a broken one (a different breakage per host
  index); done when every daemon on every host has counted the refused reload, then the good file is
  put back and every daemon has reloaded it.
- `rogue-peer`: the rogue BIRD (lab.rogue) sends this host more prefixes than `maxPrefixes`; done
  when the host's bgpd counted the limit hit (it resets that session with Cease/1 and holds it down).
- `etcd-kill` (lab on etcd): one member SIGKILLed, started again, healthy; `etcd-all`: every member
  stopped, every host's bgpd reports the datastore unreachable, members started again, every
  daemon ready again.

After an event's action, the run waits until every pair of pods has gone `quiet` seconds with no
probe lost; the event's time to whole is from the fault (for a link flap: from the link's return)
to the send time of its last lost probe plus one probe interval (0 when nothing was lost).
"""

from __future__ import annotations

import os
import platform
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, field
from datetime import UTC, datetime
from pathlib import Path

from lab.cluster import Lab
from lab.probe_matrix import ProbeMatrix
from lab.rogue import PEER_NAME, RogueBird, rogue_address, start_rogue
from lab.topology import LabTopology, _port
from proto.record import record

HOST_KINDS = ("bgpd-kill", "bgpd-term", "felixd-kill", "felixd-term", "link-flap", "bad-config", "rogue-peer")
ETCD_KINDS = ("etcd-kill", "etcd-all")
KINDS = HOST_KINDS + ETCD_KINDS
PORTS = {"bgpd": 9092, "felixd": 9091}
FLAP_DOWN = 2.0  # seconds the uplink stays down
FLAP_WHOLE = 1.0  # the flapped host must be whole within this long of its link returning
GOALS = {
    "bgpd-kill": "0 lost", "bgpd-term": "0 lost", "felixd-kill": "0 lost", "felixd-term": "0 lost",
    "bad-config": "0 lost", "rogue-peer": "0 lost", "etcd-kill": "0 lost", "etcd-all": "0 lost",
    "link-flap": f"other hosts 0 lost; whole within {FLAP_WHOLE:g} s of the link's return",
}


@record
class EventResult:
    kind: str
    target: str  # host, or etcd member
    lost: int
    lost_pairs: dict[str, int]  # "src>dst" -> probes lost, only pairs that lost any
    sent: int  # probes sent over every pair during the event
    whole_s: float | None  # fault (link flap: link's return) to the last lost probe + an interval; None: never
    action_s: float  # how long the action took (restart to ready, down + up, ...)
    goal: str
    met: bool
    detail: str = ""

    def row(self) -> str:
        whole = "not whole" if self.whole_s is None else f"{self.whole_s:.2f} s"
        return (f"{self.kind:<12} {self.target:<9} lost {self.lost:>4} of {self.sent:>5}  whole after {whole:<9}"
                f"  action {self.action_s:.2f} s  {'ok' if self.met else 'MISSED: ' + self.goal}"
                f"{'  (' + self.detail + ')' if self.detail else ''}")


@record
class ChaosRun:
    started: str
    commit: str
    machine: str
    load: str
    command: str
    datastore: str
    rate: float
    pods: list[str]
    events: list[EventResult] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def commit_id(repo: Path) -> str:
    out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or "unknown"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def plan(hosts: list[str], kinds: tuple[str, ...], every_host: bool) -> list[tuple[str, str]]:
    """(kind, host) in order: every kind on every host in turn, or each kind once on a rotating host.
    A host's rogue-peer event comes last for it (its rogue session then stays held down for 30 s)."""
    host_kinds = [k for k in kinds if k in HOST_KINDS]
    if every_host:
        return [(k, h) for h in hosts for k in host_kinds]
    return [(k, hosts[i % len(hosts)]) for i, k in enumerate(host_kinds)]


BREAKAGES: tuple[tuple[str, str, str], ...] = (
    ("a field's value", "cidr: 192.168.0.0/16", "cidr: 192.168.0.0/33"),
    ("not YAML", "blockSize: 26", "blockSize: [26"),
    ("a field's type", "asNumber: 64512", "asNumber: sixty-four"),
    ("an unknown kind", "kind: IPPool", "kind: IPPoool"),
)


def bad_config(good: bytes, index: int) -> bytes:
    """A broken copy of a cluster file; `index` picks the breakage (BREAKAGES, in turn)."""
    _, old, new = BREAKAGES[index % len(BREAKAGES)]
    text = good.decode()
    if old not in text:
        raise ValueError(f"the cluster file has no {old!r} to break")
    return text.replace(old, new, 1).encode()


def _gone(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    except ChildProcessError:
        pass  # not our child: look at /proc
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def poll(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll `check` until it holds; seconds taken, or TimeoutError naming `what`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)  # paces the poll; the deadline above bounds it
    return time.monotonic() - start


class Chaos:
    def __init__(self, lab: Lab, *, rate: float = 25.0, quiet: float = 1.0, whole_timeout: float = 90.0,
                 log: Callable[[str], None] = print) -> None:
        self.lab = lab
        self.topo: LabTopology = lab.topology or lab.load()
        self.rate = rate
        self.quiet = quiet
        self.whole_timeout = whole_timeout
        self.log = log
        pods = list(self.topo.scenario.pods)
        self.matrix = ProbeMatrix(self.topo, pods, rate=rate)
        self.pods_of = {h.name: [p.name for p in pods if p.host == h.name] for h in self.topo.scenario.hosts}
        self.rogue: RogueBird | None = None
        self.good_config = lab.config.read_bytes()

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.topo.scenario.hosts]

    @property
    def on_etcd(self) -> bool:
        return self.lab.datastore_config.exists()

    def has_rogue_peer(self) -> bool:
        return f"peerIP: {rogue_address()}" in self.good_config.decode(errors="replace")

    # ---------------------------------------------------------------- life cycle

    def start(self, converge_timeout: float = 120.0) -> float:
        """Probers in every pod, the rogue peer when the cluster has its BGPPeer; returns the seconds
        until every pair of pods was whole (the lab converged)."""
        t0 = time.monotonic()
        if self.has_rogue_peer():
            self.rogue = start_rogue(self.topo, self.lab.dir / "rogue")
        for h in self.hosts:
            for d in ("bgpd", "felixd"):
                poll(lambda h=h, d=d: self.ready(h, d), converge_timeout, f"{d} on {h} ready")
        self.matrix.start()
        if self.matrix.wait_whole(time.monotonic(), 2 * self.quiet, converge_timeout) is None:
            raise RuntimeError(f"the pods never all reached each other: {self.matrix.losses(t0)}")
        if self.rogue is not None:
            for _, addr in self.rogue.hosts:
                self.rogue.wait_established(addr, 60)
        return time.monotonic() - t0

    def stop(self) -> None:
        self.matrix.stop()
        if self.rogue is not None:
            self.rogue.stop()
        if self.lab.config.read_bytes() != self.good_config:
            self._write_config(self.good_config)

    # ---------------------------------------------------------------- the daemons, seen from outside

    def scrape(self, host: str, port: int, path: str) -> tuple[int, str]:
        out = self.topo.ns(host).exec("curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "2",
                                      f"http://127.0.0.1:{port}{path}", check=False, timeout=10).stdout
        body, _, code = out.rpartition("\n")
        return int(code or 0), body

    def ready(self, host: str, daemon: str) -> bool:
        return self.scrape(host, PORTS[daemon], "/readiness")[0] == 200

    def counter(self, host: str, daemon: str, metric: str, labels: str = "") -> float:
        _, body = self.scrape(host, PORTS[daemon], "/metrics")
        pattern = rf"^{re.escape(metric)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} (\S+)$"
        return sum(float(v) for v in re.findall(pattern, body, re.M))

    # ---------------------------------------------------------------- events

    def run(self, kind: str, target: str) -> EventResult:
        action = getattr(self, "_" + kind.replace("-", "_"))
        t0 = time.monotonic()
        sent0 = self.matrix.totals()[0]
        ref, detail = action(target)
        acted = time.monotonic()
        last = self.matrix.wait_whole(t0, self.quiet, self.whole_timeout)
        end = time.monotonic()
        losses = {f"{a}>{b}": len(ts) for (a, b), ts in self.matrix.losses(t0, end).items() if ts}
        lost = sum(losses.values())
        whole = None if last is None else (0.0 if lost == 0 else max(0.0, last + self.matrix.interval - ref))
        result = EventResult(kind, target, lost, losses, self.matrix.totals()[0] - sent0, whole, acted - t0,
                             GOALS[kind], False, detail)
        result.met = self._met(result)
        self.log(result.row())
        return result

    def _met(self, r: EventResult) -> bool:
        if r.whole_s is None:
            return False
        if r.kind != "link-flap":
            return r.lost == 0
        return self.others_lost(r) == 0 and r.whole_s <= FLAP_WHOLE

    def others_lost(self, r: EventResult) -> int:
        """Probes lost between pods of which neither is on the event's host."""
        mine = set(self.pods_of.get(r.target, []))
        return sum(n for pair, n in r.lost_pairs.items() if not mine & set(pair.split(">")))

    def _restart(self, host: str, daemon: str, sig: int) -> tuple[float, str]:
        label = f"{daemon}-{host}"
        pid = self.topo.state.pids[label]
        t0 = time.monotonic()
        self.lab.stop_daemon(label, sig)
        poll(lambda: _gone(pid), 30, f"{label} (pid {pid}) to exit")
        exited = time.monotonic() - t0
        self.lab.start_daemons(host, (daemon,))
        poll(lambda: self.ready(host, daemon), 90, f"{label} ready after its restart", interval=0.1)
        return t0, f"pid {pid} -> {self.topo.state.pids[label]}, exited in {exited:.2f} s"

    def _bgpd_kill(self, host: str) -> tuple[float, str]:
        return self._restart(host, "bgpd", signal.SIGKILL)

    def _bgpd_term(self, host: str) -> tuple[float, str]:
        return self._restart(host, "bgpd", signal.SIGTERM)

    def _felixd_kill(self, host: str) -> tuple[float, str]:
        return self._restart(host, "felixd", signal.SIGKILL)

    def _felixd_term(self, host: str) -> tuple[float, str]:
        return self._restart(host, "felixd", signal.SIGTERM)

    def _link_flap(self, host: str) -> tuple[float, str]:
        fabric, port = self.topo.ns("fabric"), _port("vf", host)
        fabric.ip("link", "set", port, "down")
        down = time.monotonic()
        # the fault itself is "down for 2 s": a hold, not a wait for something to happen
        time.sleep(FLAP_DOWN)
        fabric.ip("link", "set", port, "up")
        up = time.monotonic()
        return up, f"uplink {port} down {up - down:.2f} s"

    def _write_config(self, data: bytes) -> None:
        tmp = self.lab.config.with_suffix(".chaos-tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.lab.config)

    def _reloads(self, result: str) -> dict[tuple[str, str], float]:
        metric = {"bgpd": "tortie_bgp_config_reloads_total", "felixd": "tortie_felix_config_reloads_total"}
        return {(h, d): self.counter(h, d, metric[d], f'result="{result}"') for h in self.hosts for d in PORTS}

    def _bad_config(self, host: str) -> tuple[float, str]:
        if self.on_etcd:
            raise RuntimeError("bad-config writes the cluster file: run it on a lab on the file datastore")
        index = self.hosts.index(host)
        invalid, ok = self._reloads("invalid"), self._reloads("ok")
        t0 = time.monotonic()
        self._write_config(bad_config(self.good_config, index))
        poll(lambda: all(v > invalid[k] for k, v in self._reloads("invalid").items()), 60,
             "every daemon to refuse the bad cluster file", interval=0.2)
        refused = time.monotonic() - t0
        self._write_config(self.good_config)
        poll(lambda: all(v > ok[k] for k, v in self._reloads("ok").items()), 60,
             "every daemon to reload the good cluster file", interval=0.2)
        what = BREAKAGES[index % len(BREAKAGES)][0]
        return t0, f"bad {what}: refused by every daemon in {refused:.2f} s, good file back"

    def _rogue_peer(self, host: str) -> tuple[float, str]:
        if self.rogue is None:
            raise RuntimeError(f"no rogue peer: the cluster has no BGPPeer {PEER_NAME} at {rogue_address()}")
        metric = "tortie_bgp_prefix_limit_exceeded_total"
        before = self.counter(host, "bgpd", metric)
        t0 = time.monotonic()
        self.rogue.flood(host)
        try:
            took = poll(lambda: self.counter(host, "bgpd", metric) > before, 30,
                        f"{host}'s bgpd to hit the rogue peer's prefix limit", interval=0.1)
        finally:
            self.rogue.calm(host)
        return t0, f"Cease/1 after {took:.2f} s"

    def _etcd(self) -> object:
        from lab.etcd import EtcdCluster

        if not isinstance(self.lab.etcd, EtcdCluster):
            raise RuntimeError("etcd events need a lab on etcd started by this process")
        return self.lab.etcd

    def _etcd_kill(self, member: str) -> tuple[float, str]:
        from lab.etcd import record_pids

        ec = self._etcd()
        m = next(x for x in ec.members if x.name == member)  # type: ignore[attr-defined]
        t0 = time.monotonic()
        ec.kill_member(m)  # type: ignore[attr-defined]
        ec.start_member(m)  # type: ignore[attr-defined]
        ec.wait_healthy()  # type: ignore[attr-defined]
        record_pids(self.topo, ec)
        return t0, f"member {member} back healthy in {time.monotonic() - t0:.2f} s"

    def _etcd_all(self, _target: str) -> tuple[float, str]:
        from lab.etcd import record_pids

        ec = self._etcd()
        t0 = time.monotonic()
        for m in ec.members:  # type: ignore[attr-defined]
            ec.kill_member(m, signal.SIGTERM)  # type: ignore[attr-defined]
        record_pids(self.topo, ec)
        for h in self.hosts:
            poll(lambda h=h: self.scrape(h, PORTS["bgpd"], "/readiness")[0] == 503, 60,
                 f"{h}'s bgpd to notice the datastore is gone", interval=0.2)
        noticed = time.monotonic() - t0
        for m in ec.members:  # type: ignore[attr-defined]
            ec.start_member(m)  # type: ignore[attr-defined]
        ec.wait_healthy()  # type: ignore[attr-defined]
        record_pids(self.topo, ec)
        for h in self.hosts:
            for d in PORTS:
                poll(lambda h=h, d=d: self.ready(h, d), 90, f"{d} on {h} ready again", interval=0.2)
        return t0, f"every host unready after {noticed:.2f} s; all ready again"

    def etcd_members(self) -> list[str]:
        ec = self._etcd()
        return [m.name for m in ec.members]  # type: ignore[attr-defined]


def new_run(lab: Lab, chaos: Chaos, command: str) -> ChaosRun:
    repo = Path(__file__).resolve().parents[1]
    return ChaosRun(started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), commit=commit_id(repo),
                    machine=f"{platform.node()}, {os.cpu_count()} cores, {platform.release()}", load=load_average(),
                    command=command, datastore="etcd" if chaos.on_etcd else "file", rate=chaos.rate,
                    pods=[p.name for p in chaos.matrix.pods])
