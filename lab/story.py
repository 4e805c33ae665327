"""The Calico routing article's story, step by step, on a running lab: used by `make demo` (which
prints it) and by tests/e2e (which asserts it).

Each step applies an IPPool the way the article does (`tortiectl apply -f configs/...`), waits until
the pod-to-pod HTTP matrix reaches what the article says for that step (timing how long the switch
took), and records the routes on worker-1 and the matrix.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.cluster import Lab
from lab.topology import REPO

PAIRS = [("pod-1", "pod-2"), ("pod-1", "pod-3"), ("pod-2", "pod-1"), ("pod-3", "pod-1")]
BLOCK_W2, BLOCK_W3 = "192.168.133.192/26", "192.168.97.192/26"
SWITCH_DEADLINE = 60.0

Say = Callable[[str], None]


@dataclass
class StepResult:
    name: str
    pool_file: str | None
    srcdst: bool
    expected: dict[tuple[str, str], bool]
    matrix: dict[tuple[str, str], bool] = field(default_factory=dict)
    reached: bool = False
    seconds: float = 0.0
    routes: dict[str, str] = field(default_factory=dict)  # worker-1's route per block
    skipped: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.skipped) or (self.reached and self.matrix == self.expected)


def _route_lines(lab: Lab, host: str) -> str:
    return lab.exec(host, ["ip", "route", "show"]).stdout


def route_of(lab: Lab, host: str, prefix: str) -> str:
    for line in _route_lines(lab, host).splitlines():
        if line.startswith(prefix + " ") or line.startswith(f"blackhole {prefix}"):
            return line.strip()
    return ""


class Story:
    def __init__(self, lab: Lab, say: Say = lambda _s: None, repo: Path = REPO) -> None:
        self.lab = lab
        self.say = say
        self.repo = repo
        self.results: list[StepResult] = []

    # ---------------------------------------------------------------- helpers

    def tortiectl(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.exec(host, ["tortiectl", *args])

    def apply(self, pool_file: str) -> float:
        path = self.repo / "configs" / pool_file
        self.say(f"$ tortiectl apply -f configs/{pool_file}")
        t0 = time.monotonic()
        proc = self.tortiectl("master", "apply", "-f", str(path))
        if proc.returncode != 0:
            raise RuntimeError(f"tortiectl apply failed: {proc.stderr.strip()}")
        self.say(proc.stdout.strip())
        return t0

    def matrix(self) -> dict[tuple[str, str], bool]:
        return {(a, b): self.lab.http(a, b, timeout=1.5).ok for a, b in PAIRS}

    def wait_matrix(self, expected: dict[tuple[str, str], bool], since: float,
                    deadline: float = SWITCH_DEADLINE) -> tuple[bool, float, dict[tuple[str, str], bool]]:
        """Poll the matrix until it equals `expected` (twice in a row, so a flapping state does not
        count) or the deadline passes."""
        last: dict[tuple[str, str], bool] = {}
        hits = 0
        while True:
            last = self.matrix()
            hits = hits + 1 if last == expected else 0
            if hits >= 2:
                return True, time.monotonic() - since, last
            if time.monotonic() - since > deadline:
                return False, time.monotonic() - since, last

    def show_matrix(self, m: dict[tuple[str, str], bool], expected: dict[tuple[str, str], bool]) -> None:
        for (a, b), ok in m.items():
            want = expected[(a, b)]
            mark = "ok  " if ok else "FAIL"
            note = "" if ok == want else "   <-- not what the article says"
            self.say(f"  {a} -> {b}: {mark}{note}")

    def show_host(self, host: str = "worker-1") -> None:
        proc = self.tortiectl(host, "routes")
        if proc.returncode == 0 and proc.stdout.strip():
            self.say(f"$ tortiectl routes        (on {host})")
            self.say(proc.stdout.rstrip())
        self.say(f"$ ip route                (on {host})")
        self.say(_route_lines(self.lab, host).rstrip())

    def record_routes(self, result: StepResult) -> None:
        for block in (BLOCK_W2, BLOCK_W3):
            result.routes[block] = route_of(self.lab, "worker-1", block)

    # ---------------------------------------------------------------- the story

    def wait_mesh(self, deadline: float = 60.0) -> float:
        from runtime.control import ControlError, call

        t0 = time.monotonic()
        hosts = [h.name for h in self.lab.load().scenario.hosts]
        while True:
            try:
                states = [p["state"] for h in hosts
                          for p in call(str(self.lab.run_dir(h) / "bgpd.sock"), "status")["peers"]]
                felix = [call(str(self.lab.run_dir(h) / "felixd.sock"), "status")["ready"] for h in hosts]
                if states and all(s == "Established" for s in states) and all(felix):
                    return time.monotonic() - t0
            except ControlError:
                pass
            if time.monotonic() - t0 > deadline:
                raise TimeoutError("the BGP mesh (or felixd) did not come up")
            time.sleep(0.2)

    def node_status(self) -> str:
        proc = self.tortiectl("master", "node", "status")
        self.say("$ tortiectl node status   (on master)")
        self.say((proc.stdout or proc.stderr).rstrip())
        return proc.stdout

    def ipip_supported(self) -> bool:
        from runtime.control import call

        return bool(call(str(self.lab.run_dir("worker-1") / "felixd.sock"), "status")["ipip_supported"])

    def step(self, name: str, pool_file: str | None, srcdst: bool, expected: dict[tuple[str, str], bool],
             intro: str) -> StepResult:
        self.say("")
        self.say(f"=== {name}")
        self.say(intro)
        result = StepResult(name, pool_file, srcdst, expected)
        self.lab.srcdst(srcdst)
        self.say(f"(cloud source/destination check on subnet 1: {'on' if srcdst else 'off'})")
        since = self.apply(pool_file) if pool_file else time.monotonic()
        result.reached, result.seconds, result.matrix = self.wait_matrix(expected, since)
        self.record_routes(result)
        self.show_host()
        self.say("pod-to-pod HTTP:")
        self.show_matrix(result.matrix, expected)
        if result.reached:
            self.say(f"matrix as the article says {result.seconds:.1f} s after the change")
        else:
            self.say(f"matrix NOT as the article says after {result.seconds:.0f} s")
        self.results.append(result)
        return result

    def run(self) -> list[StepResult]:
        all_ok = dict.fromkeys(PAIRS, True)
        t = self.wait_mesh()
        self.say(f"BGP full mesh up in {t:.1f} s")
        self.node_status()

        self.say("")
        self.say("=== 1. ipipMode: Always (the default pool)")
        if self.ipip_supported():
            self.results.append(self.step("1. IP-in-IP Always", None, True, all_ok,
                                          "Every block is routed via tunl0: encapsulated, so the cloud check passes."))
        else:
            r = StepResult("1. IP-in-IP Always", None, True, all_ok,
                           skipped="this kernel cannot do IP-in-IP (CONFIG_NET_IPIP is off); "
                                   "the VM tier runs this step on Debian's kernel")
            self.say(f"skipped: {r.skipped}")
            self.say("felixd says so once, counts it (tortie_felix_kernel_feature_missing{feature=\"ipip\"}) and goes on.")
            self.results.append(r)

        direct_on = {("pod-1", "pod-2"): False, ("pod-1", "pod-3"): False,
                     ("pod-2", "pod-1"): False, ("pod-3", "pod-1"): False}
        self.step("2a. ipipMode: Never, src/dst check on", "ippool-direct.yaml", True, direct_on,
                  "Direct routing: the fabric's source/destination check drops frames whose addresses are pods'.")
        direct_off = {("pod-1", "pod-2"): True, ("pod-1", "pod-3"): False,
                      ("pod-2", "pod-1"): True, ("pod-3", "pod-1"): False}
        self.step("2b. ipipMode: Never, src/dst check off", None, False, direct_off,
                  "Same subnet now works; pod-3 is across the gateway, which knows only host subnets.")
        if self.ipip_supported():
            self.step("3. ipipMode: CrossSubnet", "ippool-crosssubnet.yaml", False, all_ok,
                      "Direct inside subnet 1, IP-in-IP to worker-3 across the gateway.")
        else:
            r = StepResult("3. ipipMode: CrossSubnet", "ippool-crosssubnet.yaml", False, all_ok,
                           skipped="IP-in-IP CrossSubnet needs tunl0; shown with VXLAN CrossSubnet next")
            self.say("")
            self.say(f"=== 3. ipipMode: CrossSubnet: skipped here ({r.skipped})")
            self.results.append(r)
        self.step("3v. vxlanMode: CrossSubnet", "ippool-vxlan-crosssubnet.yaml", False, all_ok,
                  "Direct inside subnet 1, VXLAN to worker-3 across the gateway.")
        step4 = self.step("4. vxlanMode: Always, src/dst check on", "ippool-vxlan.yaml", True, all_ok,
                          "Everything through vxlan.calico: UDP 4789 between host addresses passes the cloud check.")
        step4.notes.append(self.capture_vxlan())
        self.say(step4.notes[-1])
        self.results.append(self.nat_outgoing())
        return self.results

    def capture_vxlan(self) -> str:
        """One VXLAN packet on the fabric port of worker-1, decoded: proves the encapsulation."""
        fabric = self.lab.ns("fabric")
        port = "vf-w1"
        proc = subprocess.Popen(["ip", "netns", "exec", fabric.name, "tcpdump", "-n", "-l", "-c", "1", "-i", port,
                                 "-x", "udp port 4789"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 15
            out = ""
            while time.monotonic() < deadline and proc.poll() is None:
                self.lab.http("pod-1", "pod-2", timeout=1.0)
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        hexdata = "".join(line.split(":", 1)[1] for line in out.splitlines()
                          if line.strip().startswith("0x")).replace(" ", "")
        raw = bytes.fromhex(hexdata) if hexdata else b""
        # IPv4 header (20) + UDP header (8) + VXLAN header: flags(1) reserved(3) VNI(3) reserved(1)
        if len(raw) < 36:
            return f"capture on the fabric: no VXLAN packet seen ({out.strip()[:200]})"
        ihl = (raw[0] & 0x0F) * 4
        udp = raw[ihl:ihl + 8]
        vni = int.from_bytes(raw[ihl + 8 + 4:ihl + 8 + 7], "big")
        dport = int.from_bytes(udp[2:4], "big")
        src = ipaddress.IPv4Address(raw[12:16])
        dst = ipaddress.IPv4Address(raw[16:20])
        self.vxlan_seen = (dport, vni, str(src), str(dst))
        return f"capture on the fabric: {src} -> {dst} UDP {dport}, VXLAN VNI {vni}"

    def nat_outgoing(self) -> StepResult:
        self.say("")
        self.say("=== 5. natOutgoing: a pod reaches a host outside the pools")
        scenario = self.lab.load().scenario
        ext = scenario.externals[0]
        ext_ip = ext.address.split("/")[0]
        expected = {("pod-1", "external"): True}
        result = StepResult("5. natOutgoing", None, True, expected)
        t0 = time.monotonic()
        seen = ""
        while time.monotonic() - t0 < SWITCH_DEADLINE:
            proc = self.lab.ns("pod-1").exec("curl", "-sS", "--max-time", "2", f"http://{ext_ip}/", check=False,
                                             timeout=10)
            if proc.returncode == 0:
                seen = proc.stdout.strip()
                break
        result.seconds = time.monotonic() - t0
        result.matrix = {("pod-1", "external"): bool(seen)}
        result.reached = bool(seen)
        result.notes.append(seen)
        host = scenario.host("worker-1").address.split("/")[0]
        self.say(f"pod-1 (192.168.226.65) -> external ({ext_ip}): "
                 f"{'ok' if seen else 'FAIL'}; the external host saw the source {seen or '?'}"
                 f" (worker-1 is {host}: masqueraded by the nftables table `tortie`)")
        return result
