"""The Calico routing article's cluster, built in network namespaces on one machine.

Shape (seed scenario): a `fabric` namespace holds one bridge per subnet and routes between them
through the gateway addresses, knowing only host subnets; hosts hang off the bridges by veths; each
pod is a namespace attached to its host by a veth (`cali...` on the host side, Calico's 169.254.1.1
default route in the pod). Nothing links any of them to the root namespace, so no packet can leave.

A cloud-style source/destination check (as on the article's AWS hosts) is nftables in the fabric's
bridge family: a frame from a host's port must carry that host's IP as source, a frame to a host's
port must carry its IP as destination. Encapsulated traffic (IP-in-IP, VXLAN) passes; direct pod
traffic on subnet 1 does not.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.netns import Netns, NetnsError, run
from proto.resources import ClusterModel, load_model

STATE_DIR = Path(os.environ.get("TORTIE_LAB_DIR", "/run/tortie-lab"))


@dataclass(frozen=True)
class Subnet:
    name: str  # short, used in interface names
    cidr: str  # e.g. 10.30.0.0/24
    gateway: str  # the fabric's address on it
    srcdst_check: bool = False  # this subnet behaves like an AWS VPC subnet


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # with prefix, e.g. 10.30.0.206/24
    subnet: str  # Subnet.name


@dataclass(frozen=True)
class Pod:
    name: str
    host: str
    ip: str  # e.g. 192.168.226.65
    host_iface: str  # cali... on the host side


@dataclass(frozen=True)
class External:
    """A host outside the cluster and its pools, for natOutgoing: its own subnet on the fabric."""

    name: str
    address: str
    subnet: str


@dataclass(frozen=True)
class Scenario:
    name: str
    subnets: tuple[Subnet, ...]
    hosts: tuple[Host, ...]
    pods: tuple[Pod, ...]
    externals: tuple[External, ...] = ()

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def subnet(self, name: str) -> Subnet:
        return next(s for s in self.subnets if s.name == name)


REPO = Path(__file__).resolve().parents[1]
SEED_CLUSTER = REPO / "configs" / "seed-cluster.yaml"
EXTERNAL = External("external", "203.0.113.10/24", "ext")
EXTERNAL_SUBNET = Subnet("ext", "203.0.113.0/24", "203.0.113.1")


def scenario_from_model(model: ClusterModel, name: str = "seed") -> Scenario:
    """Hosts from the Nodes, one fabric subnet per distinct host subnet (gateway: its first address),
    pods from the WorkloadEndpoints. The first subnet behaves like the article's AWS subnet."""
    subnets: dict[ipaddress.IPv4Network, Subnet] = {}
    hosts = []
    for node in model.nodes:
        if node.ipv4_address is None:
            continue
        net = node.ipv4_address.network
        if net not in subnets:
            subnets[net] = Subnet(f"s{len(subnets) + 1}", str(net), str(next(net.hosts())),
                                  srcdst_check=not subnets)
        hosts.append(Host(node.name, str(node.ipv4_address), subnets[net].name))
    pods = tuple(Pod(w.name, w.node, str(w.ip_networks[0].network_address), w.interface_name)
                 for w in model.workloads if w.ip_networks)
    return Scenario(name=name, subnets=(*subnets.values(), EXTERNAL_SUBNET), hosts=tuple(hosts), pods=pods,
                    externals=(EXTERNAL,))


def seed_scenario(config: Path = SEED_CLUSTER) -> Scenario:
    """The article's cluster: three hosts on subnet 1 (AWS src/dst check on), one on subnet 2."""
    return scenario_from_model(load_model(config.read_text(), str(config)))


@dataclass
class LabState:
    """What `lab up` made, on disk so that `lab down` from another process can undo it."""

    prefix: str
    scenario: str
    namespaces: dict[str, str] = field(default_factory=dict)  # role name -> namespace name
    pids: dict[str, int] = field(default_factory=dict)  # process label -> pid
    srcdst: bool = True

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(directory / "state.json")

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        try:
            raw = json.loads((directory / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return cls(**raw)


def _port(kind: str, name: str) -> str:
    """An interface name of at most 15 characters for a fabric port."""
    short = name.replace("worker-", "w").replace("master", "m").replace("external", "x")
    return f"{kind}-{short}"[:15]


class Topology:
    """Builds and tears down a scenario's namespaces. Daemons are the caller's business."""

    def __init__(self, scenario: Scenario, prefix: str = "tl-", state_dir: Path = STATE_DIR) -> None:
        self.scenario = scenario
        self.prefix = prefix
        self.state_dir = state_dir
        self.state = LabState(prefix=prefix, scenario=scenario.name)

    def ns(self, role: str) -> Netns:
        return Netns(self.state.namespaces.get(role, f"{self.prefix}{role}"))

    def _add_ns(self, role: str) -> Netns:
        ns = Netns(f"{self.prefix}{role}")
        run(["ip", "netns", "add", ns.name])
        self.state.namespaces[role] = ns.name
        self.state.save(self.state_dir)
        ns.ip("link", "set", "lo", "up")
        return ns

    def up(self) -> None:
        sc = self.scenario
        fabric = self._add_ns("fabric")
        fabric.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for sn in sc.subnets:
            br = f"br-{sn.name}"
            fabric.ip("link", "add", br, "type", "bridge")
            plen = ipaddress.ip_network(sn.cidr).prefixlen
            fabric.ip("addr", "add", f"{sn.gateway}/{plen}", "dev", br)
            fabric.ip("link", "set", br, "up")
        for host in sc.hosts:
            self._attach(fabric, host.name, host.address, host.subnet)
            h = self.ns(host.name)
            h.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for ext in sc.externals:
            self._attach(fabric, ext.name, ext.address, ext.subnet)
        for pod in sc.pods:
            self._add_pod(pod)
        self.set_srcdst(True)

    def _attach(self, fabric: Netns, name: str, address: str, subnet: str) -> None:
        sn = self.scenario.subnet(subnet)
        host = self._add_ns(name)
        port = _port("vf", name)
        # Created inside the fabric and moved to the host: neither end ever sits in the root namespace.
        fabric.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.name)
        fabric.ip("link", "set", port, "master", f"br-{sn.name}")
        fabric.ip("link", "set", port, "up")
        host.ip("addr", "add", address, "dev", "eth0")
        host.ip("link", "set", "eth0", "up")
        host.ip("route", "add", "default", "via", sn.gateway, "dev", "eth0")

    def _add_pod(self, pod: Pod) -> None:
        host = self.ns(pod.host)
        p = self._add_ns(pod.name)
        host.ip("link", "add", pod.host_iface, "type", "veth", "peer", "name", "eth0", "netns", p.name)
        host.ip("link", "set", pod.host_iface, "up")
        p.ip("addr", "add", f"{pod.ip}/32", "dev", "eth0")
        p.ip("link", "set", "eth0", "up")
        # Calico's pod routing: everything goes to a link-local gateway answered by proxy ARP.
        p.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        p.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0")

    def srcdst_rules(self, on: bool) -> str:
        lines = ["table bridge tortie_lab_srcdst", "delete table bridge tortie_lab_srcdst",
                 "table bridge tortie_lab_srcdst {"]
        lines.append("  chain pre { type filter hook prerouting priority 0; policy accept;")
        rules_post = []
        if on:
            for host in self.scenario.hosts:
                if not self.scenario.subnet(host.subnet).srcdst_check:
                    continue
                port = _port("vf", host.name)
                ip = host.address.split("/")[0]
                lines.append(f"    iifname \"{port}\" ether type ip ip saddr != {ip} drop")
                rules_post.append(f"    oifname \"{port}\" ether type ip ip daddr != {ip} drop")
        lines.append("  }")
        lines.append("  chain post { type filter hook postrouting priority 0; policy accept;")
        lines.extend(rules_post)
        lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def set_srcdst(self, on: bool) -> None:
        self.ns("fabric").exec("nft", "-f", "-", input=self.srcdst_rules(on))
        self.state.srcdst = on
        self.state.save(self.state_dir)

    def down(self) -> None:
        teardown(self.state, self.state_dir)


def teardown(state: LabState, state_dir: Path, grace: float = 5.0) -> list[str]:
    """Stop what the lab started (SIGTERM by PID, then SIGKILL after `grace` seconds) and delete its
    namespaces; returns what was removed."""
    import signal
    import time

    removed: list[str] = []
    for pid in state.pids.values():
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    for pid in state.pids.values():
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
            except ChildProcessError:
                pass  # not our child: poll /proc until it is gone
            time.sleep(0.02)
    for name in state.namespaces.values():
        for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    for name in reversed(list(state.namespaces.values())):
        try:
            run(["ip", "netns", "del", name])
            removed.append(name)
        except NetnsError:
            pass
    try:
        (state_dir / "state.json").unlink()
    except OSError:
        pass
    return removed
