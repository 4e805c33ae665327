"""What the Calico routing article says, as data: its steps, the pod matrix each step must show, and
the route every host must hold for every other host's block.

Pure: no namespaces, no processes. `lab/story.py` runs the steps on a lab and compares what the
kernel and the pods do with what is here; the rules are the article's (and Calico's docs'), written
independently of felixd's planner so that the two check each other.
"""

from __future__ import annotations

import ipaddress

from lab.topology import Scenario
from proto.record import record
from proto.resources import ClusterModel, IPPool

Pair = tuple[str, str]
PAIRS: tuple[Pair, ...] = (("pod-1", "pod-2"), ("pod-1", "pod-3"), ("pod-2", "pod-1"), ("pod-3", "pod-1"))
ALL_OK: dict[Pair, bool] = dict.fromkeys(PAIRS, True)
# Direct routing: the cloud check drops pod-addressed frames on subnet 1; the gateway to subnet 2
# knows only host subnets, so it drops them too.
DIRECT_CHECK_ON: dict[Pair, bool] = dict.fromkeys(PAIRS, False)
DIRECT_CHECK_OFF: dict[Pair, bool] = {("pod-1", "pod-2"): True, ("pod-1", "pod-3"): False,
                                      ("pod-2", "pod-1"): True, ("pod-3", "pod-1"): False}
IPV4_POOL = "default-ipv4-ippool"
UPLINK = "eth0"
DEVICE = {("ipip", 4): "tunl0", ("vxlan", 4): "vxlan.calico", ("vxlan", 6): "vxlan-v6.calico"}


@record(frozen=True)
class Step:
    key: str  # "1", "2a", ...: the article's numbering ("3v" is VXLAN's CrossSubnet)
    title: str
    intro: str
    pool_file: str | None  # configs/<file> applied with tortiectl; None: the pool stays as it is
    srcdst: bool  # the cloud source/destination check on subnet 1 during the step
    expected: dict[Pair, bool]  # the IPv4 pod matrix the article shows
    needs_ipip: bool = False

    @property
    def name(self) -> str:
        return f"{self.key}. {self.title}"


STEPS: tuple[Step, ...] = (
    Step("1", "ipipMode: Always (the default pool)",
         "Every block is routed via tunl0: IP-in-IP between host addresses, so the cloud check passes.",
         None, True, ALL_OK, needs_ipip=True),
    Step("2a", "ipipMode: Never, src/dst check on",
         "Direct routing: the fabric's source/destination check drops frames whose addresses are pods'.",
         "ippool-direct.yaml", True, DIRECT_CHECK_ON),
    Step("2b", "ipipMode: Never, src/dst check off",
         "Same subnet now works; pod-3 is across the gateway, which knows only host subnets.",
         None, False, DIRECT_CHECK_OFF),
    Step("3", "ipipMode: CrossSubnet",
         "Direct inside subnet 1, IP-in-IP to worker-3 across the gateway.",
         "ippool-crosssubnet.yaml", False, ALL_OK, needs_ipip=True),
    Step("3v", "vxlanMode: CrossSubnet",
         "Direct inside subnet 1, VXLAN to worker-3 across the gateway.",
         "ippool-vxlan-crosssubnet.yaml", False, ALL_OK),
    Step("4", "vxlanMode: Always, src/dst check on",
         "Everything through vxlan.calico: UDP 4789 between host addresses passes the cloud check.",
         "ippool-vxlan.yaml", True, ALL_OK),
)
NAT_KEY = "5"


def step(key: str) -> Step:
    return next(s for s in STEPS if s.key == key)


@record(frozen=True)
class PredictedRoute:
    """A remote block's route as `ip route` prints its essentials."""

    dst: str
    gateway: str
    dev: str
    onlink: bool = False

    def text(self) -> str:
        return f"{self.dst} via {self.gateway} dev {self.dev}{' onlink' if self.onlink else ''}"


def pool_mode(pool: IPPool) -> str | None:
    """Calico's rule: VXLAN if vxlanMode != Never, else IPIP if ipipMode != Never, else none."""
    if pool.vxlan_mode != "Never":
        return "vxlan"
    if pool.ipip_mode != "Never":
        return "ipip"
    return None


def _cross_subnet(pool: IPPool) -> bool:
    return (pool.vxlan_mode if pool.vxlan_mode != "Never" else pool.ipip_mode) == "CrossSubnet"


def _pool_of(model: ClusterModel, block: ipaddress.IPv4Network | ipaddress.IPv6Network) -> IPPool | None:
    pools = [p for p in model.pools if p.cidr.version == block.version and block.subnet_of(p.cidr)]  # type: ignore[arg-type]
    return max(pools, key=lambda p: p.cidr.prefixlen) if pools else None


def expected_routes(model: ClusterModel, scenario: Scenario, host: str) -> dict[str, PredictedRoute]:
    """The route `host` must hold for each block of every other node, by the article's rules:
    IP-in-IP `via <node> dev tunl0 onlink`; VXLAN `via <the node's VTEP: first address of its lowest
    block> dev vxlan.calico onlink` (vxlan-v6.calico for IPv6); direct `via <node> dev eth0` inside the
    subnet, `via <the subnet's gateway>` across it (BIRD's `gateway recursive`); CrossSubnet is direct
    inside the node's subnet and encapsulated across."""
    me_node = model.node(host)
    me = scenario.host(host)
    subnet = scenario.subnet(me.subnet)
    out: dict[str, PredictedRoute] = {}
    for other in model.nodes:
        if other.name == host:
            continue
        blocks = sorted((b.cidr for b in model.blocks_for(other)), key=lambda n: (n.version, int(n.network_address)))
        for block in blocks:
            pool = _pool_of(model, block)
            if pool is None:
                continue
            v = block.version
            mine = me_node.ipv4_address if v == 4 else me_node.ipv6_address
            theirs = other.ipv4_address if v == 4 else other.ipv6_address
            if mine is None or theirs is None:
                continue
            same_subnet = theirs.ip in mine.network
            mode = pool_mode(pool)
            if mode is not None and _cross_subnet(pool) and same_subnet:
                mode = None
            if mode == "ipip":
                out[str(block)] = PredictedRoute(str(block), str(theirs.ip), DEVICE[("ipip", 4)], onlink=True)
            elif mode == "vxlan":
                configured = other.ipv4_vxlan_tunnel_addr if v == 4 else None
                vtep = configured or next(b for b in blocks if b.version == v).network_address
                out[str(block)] = PredictedRoute(str(block), str(vtep), DEVICE[("vxlan", v)], onlink=True)
            else:
                gateway = str(theirs.ip) if same_subnet else (subnet.gateway if v == 4 else subnet.gateway6)
                out[str(block)] = PredictedRoute(str(block), gateway, UPLINK)
    return out


def pool_document(text: str, name: str = IPV4_POOL) -> str:
    """The YAML document of the IPPool `name` in a multi-document file, verbatim (comments dropped)."""
    for doc in text.split("\n---"):
        lines = [ln for ln in doc.strip("-\n").splitlines() if not ln.lstrip().startswith("#")]
        body = "\n".join(lines).strip()
        if "kind: IPPool" in body and f"name: {name}" in body:
            return body + "\n"
    return ""
