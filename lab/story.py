"""The Calico routing article's story, step by step, on a running lab: used by `make demo` (which
prints it), by tests/e2e (which asserts it) and by the VM tier (the IP-in-IP steps on Debian's kernel).

Each step switches what the article switches (an IPPool with `tortiectl apply -f configs/...`, or the
cloud source/destination check), and measures two times from that moment:

- **kernel**: until every host's kernel holds the routes the article predicts for the new pool
  (`lab.article.expected_routes`), followed through netlink route events from each host;
- **pods**: until every pod pair that must work first answers HTTP.

Pairs that must fail are then checked with one probe of a fixed, short time-out each, outside the
timing: a time-out is what failing looks like, so timing it would measure the probe, not tortie.
Step 1 (the seed's pool) has no switch: its times count from the daemons' start.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from lab import article
from lab.article import PAIRS, Pair, PredictedRoute, Step
from lab.capture import capture
from lab.cluster import Lab
from lab.netns import run, unique_name
from lab.probe import Probe, Probers
from lab.results import CaptureSummary, DualStack, NatResult, Run, StepResult
from lab.routewatch import RouteWatch, kernel_routes, mismatches
from lab.topology import REPO, SEED_CLUSTER, Scenario
from proto.resources import ClusterModel, load_model

Say = Callable[[str], None]
VXLAN_BPF = "udp port 4789"


def kernel_has_ipip() -> bool:
    """Whether this kernel makes IP-in-IP devices (what felixd's tunl0 needs), tried in a throwaway
    namespace; the kernel may load its `ipip` module for it, as it would for felixd."""
    ns = unique_name("tdk")
    run(["ip", "netns", "add", ns])
    try:
        return run(["ip", "-n", ns, "link", "add", "tdemo0", "type", "ipip"], check=False).returncode == 0
    finally:
        run(["ip", "netns", "del", ns], check=False)


def replace_pool(cluster_text: str, pool_text: str) -> str:
    """The cluster file with its IPPool of the same name replaced by `pool_text` (as apply does)."""
    name = _doc_name(pool_text)
    docs = cluster_text.split("\n---")
    out = [d for d in docs if not ("kind: IPPool" in d and _doc_name(d) == name)]
    return "\n---".join([*out, "\n" + pool_text.strip() + "\n"])


def _doc_name(doc: str) -> str:
    for line in doc.splitlines():
        if line.strip().startswith("name:"):
            return line.split(":", 1)[1].strip()
    return ""


class Story:
    """`slow` scales every time-out and deadline (the VM's emulation runs about ten times slower)."""

    def __init__(self, lab: Lab, say: Say = lambda _s: None, repo: Path = REPO, *, slow: float = 1.0,
                 where: str = "host") -> None:
        self.lab = lab
        self.say = say
        self.repo = repo
        self.slow = slow
        self.where = where
        self.run_record = Run(kernel=os.uname().release)
        self.watch: RouteWatch | None = None
        self.probers: Probers | None = None
        self.deadline = 60.0 * slow
        self.pass_probe = 0.5 * slow  # each try of a pair that must work, while waiting for it
        self.fail_probe = 1.0 * slow  # the one probe of a pair that must fail
        self._first: StepResult | None = None  # step 1, measured while the lab came up
        self._scenario: Scenario | None = None

    @property
    def results(self) -> list[StepResult]:
        return self.run_record.steps

    # ---------------------------------------------------------------- the lab

    @property
    def scenario(self) -> Scenario:
        """The lab's hosts, subnets and pods (a pool change leaves them as they are)."""
        if self._scenario is None:
            self._scenario = self.lab.load().scenario
        return self._scenario

    def model(self) -> ClusterModel:
        return load_model(self.lab.config.read_text(), str(self.lab.config))

    def up(self, config: Path = SEED_CLUSTER, *, time_first_step: bool = False) -> None:
        """Bring the lab up and its BGP mesh; with `time_first_step`, step 1's routes and pods are
        followed from the daemons' start (its pool is the seed's)."""
        t0 = time.monotonic()
        self.lab.up(config, daemons=False)
        self._scenario = None
        sc = self.scenario
        self.say(f"namespaces, fabric and pods ready in {time.monotonic() - t0:.1f} s")
        topo = self.lab.topology
        assert topo is not None
        self.watch = RouteWatch({h.name: topo.ns(h.name).name for h in sc.hosts}, rescan=2.0 * self.slow,
                                settle=0.05 * self.slow if self.slow > 1 else 0.0, read_timeout=30.0 * self.slow)
        self.probers = Probers({name: topo.ns(name).name for name in [p.name for p in sc.pods]})
        self.probers.start(timeout=60 * self.slow)
        first = article.step("1")
        result = self._new_result(first, None) if time_first_step else None
        since = time.monotonic()
        pods: dict[str, float | None] = {}
        poller = None
        if result is not None:
            result.since = "the daemons' start"
            self.watch.start(self._wants(self.model()), since, self.deadline * 2)
            must_work = [p for p, ok in first.expected.items() if ok]
            # The pods are followed from the start too, while the mesh comes up.
            poller = threading.Thread(target=lambda: pods.update(
                seconds=self.wait_pairs(must_work, since, self.deadline * 2)), name="first-step-pods")
        for host in sc.hosts:
            self.lab.start_daemons(host.name)
        self.say(f"daemons started on {len(sc.hosts)} hosts; waiting for the BGP mesh")
        if poller is not None:
            poller.start()
        try:
            self.run_record.mesh_seconds = self.wait_mesh(deadline=self.deadline * 2, since=since)
        finally:
            if poller is not None:
                poller.join()
        self.say(f"BGP full mesh up {self.run_record.mesh_seconds:.1f} s after the daemons started")
        if result is not None:
            self._measure(first, result, since, self.deadline * 2, pods_timed=True,
                          pods_seconds=pods.get("seconds"))
            self._first = result

    def close(self) -> None:
        if self.probers is not None:
            self.probers.close()
            self.probers = None
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def tortiectl(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`tortiectl ARGS` on a host, as a process of its own (what an operator runs)."""
        return self.lab.exec(host, ["tortiectl", *args], timeout=60 * self.slow)

    def tortiectl_here(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        """tortiectl's own code for a read-only verb, run in this process against `host`'s daemons
        (their control sockets are files, reachable from any namespace): the same output without a
        Python start-up per call, which under the VM's emulation costs most of a minute."""
        import contextlib
        import io

        from ctl.__main__ import main as ctl_main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = ctl_main(["--config", str(self.lab.daemon_config), *args, "--run-dir",
                                 str(self.lab.run_dir(host))])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        return subprocess.CompletedProcess(["tortiectl", *args], code, out.getvalue(), err.getvalue())

    def wait_mesh(self, deadline: float = 60.0, since: float | None = None) -> float:
        from runtime.control import ControlError, call

        t0 = time.monotonic() if since is None else since
        hosts = [h.name for h in self.scenario.hosts]
        while True:
            try:
                states = [p["state"] for h in hosts
                          for p in call(str(self.lab.run_dir(h) / "bgpd.sock"), "status")["peers"]]
                felix = [call(str(self.lab.run_dir(h) / "felixd.sock"), "status")["ready"] for h in hosts]
                if states and all(s == "Established" for s in states) and all(felix):
                    return time.monotonic() - t0
            except (ControlError, OSError):
                pass
            if time.monotonic() - t0 > deadline:
                raise TimeoutError("the BGP mesh (or felixd) did not come up")
            # polling the daemons' control sockets; gently, as every call is work for eight daemons
            time.sleep(0.2 * self.slow)

    def ipip_supported(self) -> bool:
        from runtime.control import call

        return bool(call(str(self.lab.run_dir("worker-1") / "felixd.sock"), "status")["ipip_supported"])

    # ---------------------------------------------------------------- probes

    def _targets(self, pairs: Sequence[Pair], v6: bool) -> list[tuple[str, str, str]]:
        sc = self.scenario
        return [(a, b, sc.pod(b).ip6 if v6 else sc.pod(b).ip) for a, b in pairs]

    def probe(self, pairs: Sequence[Pair], timeout: float, v6: bool = False) -> dict[Pair, Probe]:
        assert self.probers is not None
        return self.probers.probe(self._targets(pairs, v6), timeout)

    def _answered(self, res: Mapping[Pair, Probe]) -> dict[Pair, bool]:
        return {(a, b): p.ok and p.body == b for (a, b), p in res.items()}

    def wait_pairs(self, pairs: Sequence[Pair], since: float, deadline: float, v6: bool = False) -> float | None:
        """Seconds from `since` until every pair answered in the same round; None after `deadline`."""
        if not pairs:
            return None
        while True:
            started = time.monotonic()
            got = self._answered(self.probe(pairs, self.pass_probe, v6))
            if all(got.values()):
                return time.monotonic() - since
            if time.monotonic() - since > deadline:
                return None
            # A refusal comes back at once: rounds at most 50 a second (5 under the VM's emulation, where
            # a busy loop here would take the CPU the daemons need), so polling stays cheap.
            time.sleep(max(0.0, 0.02 * self.slow - (time.monotonic() - started)))

    def matrix(self, expected: Mapping[Pair, bool], v6: bool = False) -> dict[Pair, bool]:
        """One probe per pair with the fixed time-out (the pairs that must work get three tries)."""
        got = self._answered(self.probe(list(expected), self.fail_probe, v6))
        for _ in range(2):
            retry = [p for p, want in expected.items() if want and not got[p]]
            if not retry:
                break
            got.update(self._answered(self.probe(retry, self.fail_probe, v6)))
        return {p: got[p] for p in expected}

    # ---------------------------------------------------------------- routes

    def _wants(self, model: ClusterModel) -> dict[str, dict[str, PredictedRoute]]:
        sc = self.scenario
        return {h.name: article.expected_routes(model, sc, h.name) for h in sc.hosts}

    def host_routes(self, host: str) -> str:
        """The host's protocol-80 routes (felixd's), IPv4 then IPv6, as `ip route` prints them."""
        ns = self.lab.ns(host).name
        lines = []
        for family in ("-4", "-6"):
            proc = subprocess.run(["ip", "-n", ns, family, "route", "show"], capture_output=True, text=True,
                                  timeout=30 * self.slow)
            lines += [ln.replace(" metric 1024", "").replace(" pref medium", "").rstrip()
                      for ln in proc.stdout.splitlines() if " proto 80" in ln]
        return "\n".join(lines)

    # ---------------------------------------------------------------- steps

    def _new_result(self, spec: Step, pool_file: str | None) -> StepResult:
        pool_text = (self.repo / "configs" / pool_file).read_text() if pool_file else self.lab.config.read_text()
        v6 = self.scenario.dual_stack
        return StepResult(key=spec.key, name=spec.name, pool_file=pool_file,
                          pool_yaml=article.pool_document(pool_text), srcdst=spec.srcdst, expected=dict(spec.expected),
                          expected6=dict.fromkeys(PAIRS, True) if v6 else {}, fail_probe=self.fail_probe,
                          where=self.where)

    def _measure(self, spec: Step, result: StepResult, since: float, deadline: float, shift: float = 0.0,
                 pods_timed: bool = False, pods_seconds: float | None = None) -> None:
        """After a switch at `since` (the route watch already started, counting from `since - shift`):
        pods (unless already timed: `pods_seconds`), then kernel, then the must-fail probe, the IPv6
        matrix and every host's routes."""
        assert self.watch is not None
        must_work = [p for p, ok in spec.expected.items() if ok]
        if pods_timed:
            result.matrix_seconds = pods_seconds
        else:
            result.matrix_seconds = self.wait_pairs(must_work, since, deadline) if must_work else None
        converged = self.watch.join()
        result.kernel_seconds = {h: max(0.0, s - shift) for h, s in converged.seconds.items()}
        result.route_problems = converged.missing
        if not must_work and not result.route_problems:
            result.matrix_seconds = result.kernel_all  # nothing must work: as the article once routes are in
        result.matrix = self.matrix(spec.expected)
        if result.expected6:
            result.matrix6 = self.matrix(result.expected6, v6=True)
        for host in self.scenario.hosts:
            result.routes[host.name] = self.host_routes(host.name)

    def step(self, spec: Step) -> StepResult:
        if spec.key == "1" and self._first is not None:
            result, self._first = self._first, None
            self._show_step(spec, result, applied="")
            self.results.append(result)
            return result
        result = self._new_result(spec, spec.pool_file)
        assert self.watch is not None
        self.say("")
        self.say(f"=== {spec.name}")
        self.say(spec.intro)
        model = self.model()
        if spec.pool_file:
            pool_text = (self.repo / "configs" / spec.pool_file).read_text()
            model = load_model(replace_pool(self.lab.config.read_text(), pool_text), spec.pool_file)
        since = time.monotonic()
        self.watch.start(self._wants(model), since, self.deadline)
        applied, shift = "", 0.0
        if self.lab.topology is not None and self.lab.topology.state.srcdst != spec.srcdst:
            self.lab.srcdst(spec.srcdst)
            result.since = "the check switched"
        self.say(f"(cloud source/destination check on subnet 1: {'on' if spec.srcdst else 'off'})")
        if spec.pool_file:
            before = self.lab.config.stat().st_mtime_ns
            applied = self.apply(spec.pool_file, since)
            result.since = "the apply"
            written = self._written(before)
            if written is not None:
                # Count from the moment the datastore held the new pool, not from tortiectl's start.
                shift = max(0.0, written - since)
                since += shift
                applied += f"; the pool was in the datastore {shift:.2f} s after it started"
                result.since = "the apply wrote the pool"
            applied += ")"
        self._measure(spec, result, since, self.deadline, shift)
        self._show_step(spec, result, applied, header=False)
        self.results.append(result)
        return result

    def _written(self, before_ns: int) -> float | None:
        """When the lab's cluster file was last written, on time.monotonic()'s clock (None: unchanged)."""
        st = self.lab.config.stat()
        if st.st_mtime_ns == before_ns:
            return None
        return st.st_mtime_ns / 1e9 - (time.time() - time.monotonic())

    def apply(self, pool_file: str, since: float) -> str:
        self.say(f"$ tortiectl apply -f configs/{pool_file}")
        proc = self.tortiectl("master", "apply", "-f", str(self.repo / "configs" / pool_file))
        if proc.returncode != 0:
            raise RuntimeError(f"tortiectl apply failed: {proc.stderr.strip()}")
        return f"{proc.stdout.strip()}   (tortiectl returned after {time.monotonic() - since:.2f} s"

    def _show_step(self, spec: Step, r: StepResult, applied: str, header: bool = True) -> None:
        if header:
            self.say("")
            self.say(f"=== {spec.name}")
            self.say(spec.intro)
            self.say(f"(cloud source/destination check on subnet 1: {'on' if spec.srcdst else 'off'})")
        if applied:
            self.say(applied)
        self.show_host("worker-1", r)
        self.say("pod-to-pod HTTP (IPv4):")
        for (a, b), ok in r.matrix.items():
            want = r.expected[(a, b)]
            note = "" if ok == want else "   <-- not what the article says"
            self.say(f"  {a} -> {b}: {'ok  ' if ok else 'FAIL'}{'' if want else ' (must fail)'}{note}")
        if r.expected6:
            cells = ", ".join(f"{a}->{b} {'ok' if ok else 'FAIL'}" for (a, b), ok in r.matrix6.items())
            self.say(f"pod-to-pod HTTP (IPv6, VXLAN pool): {cells}")
        for line in self.switch_lines(r):
            self.say(line)

    def switch_lines(self, r: StepResult) -> list[str]:
        out = []
        if r.route_problems:
            out.append(f"kernel: NOT as the article says {self.deadline:.0f} s after {r.since}:")
            out += [f"  {h}: {p}" for h, ps in r.route_problems.items() for p in ps]
        elif r.pool_file is None and r.key != "1":
            out.append("switch: no pool change, so the routes stay as they were (the article's on every host)")
        else:
            per_host = ", ".join(f"{h} {s:.2f}" for h, s in r.kernel_seconds.items())
            out.append(f"switch: every host's kernel held the article's routes {r.kernel_all:.2f} s after {r.since}"
                       f" ({per_host})")
        must_fail = sum(1 for ok in r.expected.values() if not ok)
        if any(r.expected.values()):
            if r.matrix_seconds is None:
                out.append(f"        pods: the pairs that must work did not all work within {self.deadline:.0f} s")
            else:
                out.append(f"        pods: every pair that must work worked {r.matrix_seconds:.2f} s after {r.since}")
        if must_fail:
            out.append(f"        {must_fail} pair{'s' if must_fail > 1 else ''} that must fail: one fixed "
                       f"{r.fail_probe:.1f} s probe each, after the switch, not timed")
        return out

    def show_host(self, host: str, r: StepResult | None = None) -> None:
        proc = self.tortiectl_here(host, "routes")
        if proc.returncode == 0 and proc.stdout.strip():
            self.say(f"$ tortiectl routes        (on {host})")
            self.say(proc.stdout.rstrip())
        self.say(f"$ ip route                (on {host})")
        self.say(self.lab.exec(host, ["ip", "route", "show"]).stdout.rstrip())

    # ---------------------------------------------------------------- the story

    def node_status(self) -> str:
        proc = self.tortiectl_here("master", "node", "status")
        self.say("$ tortiectl node status   (on master)")
        self.say((proc.stdout or proc.stderr).rstrip())
        self.run_record.node_status = proc.stdout
        return proc.stdout

    def dual_stack(self) -> DualStack:
        """IPv6 beside IPv4: a session per pair over IPv6, the IPv6 pool's blocks on vxlan-v6.calico,
        every pod reaching every pod over IPv6."""
        from runtime.control import call

        ds = DualStack()
        peers = call(str(self.lab.run_dir("master") / "bgpd.sock"), "status")["peers"]
        ds.sessions = {p["address"]: p["state"] for p in peers if p.get("family") == "ipv6"}
        ds.expected = dict.fromkeys(PAIRS, True)
        model = self.model()
        sc = self.scenario
        for host in sc.hosts:
            want = {k: v for k, v in article.expected_routes(model, sc, host.name).items() if ":" in k}
            have = kernel_routes(self.lab.ns(host.name).name, 30.0 * self.slow)
            problems = mismatches(want, have)
            if problems:
                ds.route_problems[host.name] = problems
        ds.routes = self.lab.exec("worker-1", ["ip", "-6", "route", "show", "proto", "80"]).stdout.rstrip()
        ds.matrix = self.matrix(ds.expected, v6=True)
        self.say("")
        self.say("=== 6. Dual stack: IPv6 beside IPv4")
        self.say("Every node also has an IPv6 address, so each pair of nodes has a second session over IPv6"
                 " (the IPv6 table above); the IPv6 pool uses VXLAN (Calico has no IP-in-IP for IPv6).")
        self.say("$ ip -6 route show proto 80   (on worker-1)")
        self.say(ds.routes)
        cells = ", ".join(f"{a}->{b} {'ok' if ok else 'FAIL'}" for (a, b), ok in ds.matrix.items())
        self.say(f"pod-to-pod HTTP over IPv6: {cells}")
        for h, ps in ds.route_problems.items():
            self.say(f"  {h}: NOT as expected: {'; '.join(ps)}")
        self.run_record.dual_stack = ds
        return ds

    def run(self, keys: Sequence[str] | None = None, *, nat: bool = True, mesh: bool = True,
            dual: bool = True) -> Run:
        """The steps `keys` (all of the article's by default) in the article's order; then the VXLAN
        capture (with step 4), natOutgoing and the dual-stack checks."""
        wanted = [s for s in article.STEPS if keys is None or s.key in keys]
        if mesh:
            self.node_status()
        for spec in wanted:
            r = self.step(spec)
            if spec.key == "4":
                r.captures = self.capture_vxlan()
                for c in r.captures:
                    for line in c.lines():
                        self.say(line)
        if nat:
            self.run_record.nat = self.nat_outgoing()
        if dual and self.scenario.dual_stack:
            self.dual_stack()
        return self.run_record

    def capture_vxlan(self) -> list[CaptureSummary]:
        """VXLAN packets on worker-1's fabric port while pod-1 talks to pod-2 and pod-3 (IPv4, and
        IPv6 when the lab has it): the encapsulation, decoded."""
        sc = self.scenario
        fabric = self.lab.ns("fabric")
        port = "vf-w1"
        pairs = [("pod-1", "pod-2"), ("pod-1", "pod-3")]
        out = []
        families = [False, True] if sc.dual_stack else [False]
        for v6 in families:
            bpf = f"{'ip6' if v6 else 'ip'} and {VXLAN_BPF}"
            out.append(capture(fabric, port, bpf, lambda v6=v6: self.probe(pairs, self.fail_probe, v6),  # type: ignore[misc]
                               f"fabric port of worker-1 ({port})"))
        return out

    def nat_outgoing(self) -> NatResult:
        self.say("")
        self.say("=== 5. natOutgoing: a pod reaches a host outside the pools")
        sc = self.scenario
        ext_ip = sc.externals[0].address.split("/")[0]
        node_ip = sc.host("worker-1").ip
        assert self.probers is not None
        t0 = time.monotonic()
        seen = ""
        while time.monotonic() - t0 < self.deadline:
            p = self.probers.probe([("pod-1", "external", ext_ip)], self.fail_probe)[("pod-1", "external")]
            if p.ok:
                seen = p.body
                break
        nat = NatResult("pod-1", ext_ip, seen, node_ip, time.monotonic() - t0)
        self.say(f"pod-1 ({sc.pod('pod-1').ip}) -> external ({ext_ip}): "
                 f"{'ok' if seen else 'FAIL'}; the external host saw the source {seen or '?'}"
                 f" (worker-1 is {node_ip}: masqueraded by the nftables table `tortie`)")
        return nat
