"""What a run of the article's story found: per step, the matrix, the routes of every host and the
switch times; for the run, the mesh, the dual-stack checks and the captures. Plain data with a JSON
form, so that steps run inside the VM come back to the host's summary and report unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, field, fields
from typing import Any

from proto.record import record

Pair = tuple[str, str]


def _pairs_out(m: dict[Pair, bool]) -> dict[str, bool]:
    return {f"{a}>{b}": v for (a, b), v in m.items()}


def _pairs_in(m: dict[str, bool]) -> dict[Pair, bool]:
    return {tuple(k.split(">", 1)): bool(v) for k, v in m.items()}  # type: ignore[misc]


@record
class Flow:
    """VXLAN packets of one direction seen in a capture."""

    outer_src: str
    outer_dst: str
    dport: int
    vni: int
    inner_src: str
    inner_dst: str
    packets: int = 0

    def text(self) -> str:
        return (f"{self.outer_src} > {self.outer_dst} UDP {self.dport} VNI {self.vni}, inside "
                f"{self.inner_src} > {self.inner_dst}: {self.packets} packet{'s' if self.packets != 1 else ''}")


@record
class CaptureSummary:
    where: str  # e.g. "fabric port of worker-1 (vf-w1)"
    bpf: str
    packets: int = 0
    flows: list[Flow] = field(default_factory=list)
    problem: str = ""

    def lines(self) -> list[str]:
        if self.problem:
            return [f"capture on the {self.where}: {self.problem}"]
        head = f"capture on the {self.where} ({self.bpf}): {self.packets} packets"
        return [head, *(f"  {f.text()}" for f in self.flows)]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CaptureSummary:
        return cls(**{**raw, "flows": [Flow(**f) for f in raw.get("flows", [])]})


@record
class StepResult:
    key: str
    name: str
    pool_file: str | None
    pool_yaml: str
    srcdst: bool
    expected: dict[Pair, bool]
    matrix: dict[Pair, bool] = field(default_factory=dict)
    expected6: dict[Pair, bool] = field(default_factory=dict)
    matrix6: dict[Pair, bool] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # host -> its protocol-80 routes, `ip route` lines
    route_problems: dict[str, list[str]] = field(default_factory=dict)  # host -> what differs from the article
    kernel_seconds: dict[str, float] = field(default_factory=dict)  # host -> when it held the new routes
    matrix_seconds: float | None = None  # when every pair that must work first worked
    since: str = "the apply"  # what the times count from
    fail_probe: float = 0.0  # the fixed time-out of the probe each must-fail pair gets (not timed)
    where: str = "host"  # "host" (namespaces here) or "vm" (the VM tier's Debian kernel)
    skipped: str = ""  # why it did not run at all
    notes: list[str] = field(default_factory=list)
    captures: list[CaptureSummary] = field(default_factory=list)

    @property
    def kernel_all(self) -> float | None:
        """When the last host held its routes; None if one never did."""
        if self.route_problems or not self.kernel_seconds:
            return None
        return max(self.kernel_seconds.values())

    @property
    def matrix_ok(self) -> bool:
        return self.matrix == self.expected and self.matrix6 == self.expected6

    @property
    def ok(self) -> bool:
        return not self.skipped and self.matrix_ok and not self.route_problems and self.matrix_seconds is not None

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else ("ok" if self.ok else "WRONG")

    def route_line(self, host: str, prefix: str) -> str:
        """`host`'s route for `prefix` as `ip route` prints it ("" when it has none)."""
        for line in self.routes.get(host, "").splitlines():
            if line.startswith(prefix + " ") or line.startswith(f"blackhole {prefix}"):
                return line.strip()
        return ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("expected", "matrix", "expected6", "matrix6"):
            out[name] = _pairs_out(getattr(self, name))
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StepResult:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in raw.items() if k in known}
        for name in ("expected", "matrix", "expected6", "matrix6"):
            data[name] = _pairs_in(data.get(name, {}))
        data["captures"] = [CaptureSummary.from_json(c) for c in data.get("captures", [])]
        return cls(**data)


@record
class NatResult:
    source: str  # pod
    target: str  # external address
    seen: str  # the source address the external host saw ("" when nothing answered)
    node_ip: str  # what natOutgoing must turn the pod's address into
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.seen == self.node_ip


@record
class DualStack:
    """The IPv6 half: sessions, routes on vxlan-v6.calico and the pod matrix, as the run found them."""

    sessions: dict[str, str] = field(default_factory=dict)  # IPv6 peer address -> state (on master)
    routes: str = ""  # worker-1's IPv6 protocol-80 routes
    expected: dict[Pair, bool] = field(default_factory=dict)
    matrix: dict[Pair, bool] = field(default_factory=dict)
    route_problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (bool(self.sessions) and all(s == "Established" for s in self.sessions.values())
                and self.matrix == self.expected and not self.route_problems)


@record
class Run:
    """A whole story: where it ran, the mesh, and every step in the article's order."""

    kernel: str = ""  # uname -r where the host steps ran
    mesh_seconds: float = 0.0
    node_status: str = ""
    steps: list[StepResult] = field(default_factory=list)
    nat: NatResult | None = None
    dual_stack: DualStack | None = None
    vm: dict[str, Any] = field(default_factory=dict)  # how the VM part went: kernel, seconds, problem

    def step(self, key: str) -> StepResult:
        return next(s for s in self.steps if s.key == key)

    def to_json(self) -> dict[str, Any]:
        ds = None
        if self.dual_stack is not None:
            ds = {**asdict(self.dual_stack), "expected": _pairs_out(self.dual_stack.expected),
                  "matrix": _pairs_out(self.dual_stack.matrix)}
        return {"kernel": self.kernel, "mesh_seconds": self.mesh_seconds, "node_status": self.node_status,
                "steps": [s.to_json() for s in self.steps], "nat": asdict(self.nat) if self.nat else None,
                "dual_stack": ds, "vm": self.vm}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Run:
        ds = raw.get("dual_stack")
        dual = None
        if ds:
            dual = DualStack(**{**ds, "expected": _pairs_in(ds.get("expected", {})),
                                "matrix": _pairs_in(ds.get("matrix", {}))})
        return cls(kernel=raw.get("kernel", ""), mesh_seconds=raw.get("mesh_seconds", 0.0),
                   node_status=raw.get("node_status", ""),
                   steps=[StepResult.from_json(s) for s in raw.get("steps", [])],
                   nat=NatResult(**raw["nat"]) if raw.get("nat") else None, dual_stack=dual, vm=raw.get("vm", {}))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def loads(cls, text: str) -> Run:
        return cls.from_json(json.loads(text))
