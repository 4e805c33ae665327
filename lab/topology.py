"""The Calico routing article's cluster, built in network namespaces on one machine.

Shape (seed scenario): a `fabric` namespace holds one bridge per subnet and routes between them
through the gateway addresses, knowing only host subnets; hosts hang off the bridges by veths; each
pod is a namespace attached to its host by a veth (`cali...` on the host side, Calico's 169.254.1.1
default route in the pod). Nothing links any of them to the root namespace, so no packet can leave.

A cloud-style source/destination check (as on the article's AWS hosts) is nftables in the fabric's
bridge family: a frame from a host's port must carry that host's IP as source, a frame to a host's
port must carry its IP as destination. Encapsulated traffic (IP-in-IP, VXLAN) passes; direct pod
traffic on subnet 1 does not.

Dual stack: when the Nodes have `ipv6Address`es, every subnet also gets its IPv6 prefix (the fabric
routes between them and knows no pod addresses, as for IPv4), hosts their IPv6 address, and pods
their IPv6 address from their WorkloadEndpoint. IPv6 pods are wired as Calico wires them: the
host side of the pod's veth has the MAC ee:ee:ee:ee:ee:ee, so its link-local address is
fe80::ecee:eeff:feee:eeee, the pod's IPv6 default gateway. The source/destination check covers IPv6
too; neighbour discovery (link-local and multicast addresses) passes it, as on a cloud network.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, field
from pathlib import Path

from lab.netns import Netns, NetnsError, run
from proto.record import record
from proto.resources import ClusterModel, load_model

STATE_DIR = Path(os.environ.get("TORTIE_LAB_DIR", "/run/tortie-lab"))


POD_GATEWAY_MAC = "ee:ee:ee:ee:ee:ee"  # Calico's host-side MAC on a pod's veth
POD_GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"  # its link-local address: the pods' IPv6 gateway


@record(frozen=True)
class Subnet:
    name: str  # short, used in interface names
    cidr: str  # e.g. 10.30.0.0/24
    gateway: str  # the fabric's address on it
    srcdst_check: bool = False  # this subnet behaves like an AWS VPC subnet
    cidr6: str = ""  # its IPv6 prefix, e.g. fd00:10:30::/64 ("" when the hosts have no IPv6)
    gateway6: str = ""


@record(frozen=True)
class Host:
    name: str
    address: str  # with prefix, e.g. 10.30.0.206/24
    subnet: str  # Subnet.name
    address6: str = ""  # with prefix, e.g. fd00:10:30::206/64

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def ip6(self) -> str:
        return self.address6.split("/")[0]


@record(frozen=True)
class Pod:
    name: str
    host: str
    ip: str  # e.g. 192.168.226.65
    host_iface: str  # cali... on the host side
    ip6: str = ""  # e.g. fd00:192:168:226::1


@record(frozen=True)
class External:
    """A host outside the cluster and its pools, for natOutgoing: its own subnet on the fabric."""

    name: str
    address: str
    subnet: str


@record(frozen=True)
class Scenario:
    name: str
    subnets: tuple[Subnet, ...]
    hosts: tuple[Host, ...]
    pods: tuple[Pod, ...]
    externals: tuple[External, ...] = ()

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    @property
    def dual_stack(self) -> bool:
        return any(h.address6 for h in self.hosts)

    def subnet(self, name: str) -> Subnet:
        return next(s for s in self.subnets if s.name == name)


REPO = Path(__file__).resolve().parents[1]
SEED_CLUSTER = REPO / "configs" / "seed-cluster.yaml"
EXTERNAL = External("external", "203.0.113.10/24", "ext")
EXTERNAL_SUBNET = Subnet("ext", "203.0.113.0/24", "203.0.113.1")


class ScenarioError(ValueError):
    pass


def scenario_from_model(model: ClusterModel, name: str = "seed") -> Scenario:
    """Hosts from the Nodes, one fabric subnet per distinct host subnet (gateway: its first address,
    for IPv4 and IPv6 alike), pods from the WorkloadEndpoints. The first subnet behaves like the
    article's AWS subnet."""
    subnets: dict[ipaddress.IPv4Network, Subnet] = {}
    hosts = []
    for node in model.nodes:
        if node.ipv4_address is None:
            continue
        net = node.ipv4_address.network
        net6 = node.ipv6_address.network if node.ipv6_address is not None else None
        if net not in subnets:
            subnets[net] = Subnet(f"s{len(subnets) + 1}", str(net), str(next(net.hosts())),
                                  srcdst_check=not subnets, cidr6=str(net6) if net6 else "",
                                  gateway6=str(net6.network_address + 1) if net6 else "")
        elif (subnets[net].cidr6 or None) != (str(net6) if net6 else None):
            raise ScenarioError(f"Node {node.name}: its IPv4 subnet {net} is shared with nodes whose IPv6 "
                                f"subnet is {subnets[net].cidr6 or 'none'}, not {net6 or 'none'}")
        hosts.append(Host(node.name, str(node.ipv4_address), subnets[net].name,
                          str(node.ipv6_address) if node.ipv6_address is not None else ""))
    pods = []
    for w in model.workloads:
        v4 = [n for n in w.ip_networks if n.version == 4]
        v6 = [n for n in w.ip_networks if n.version == 6]
        if v4:
            pods.append(Pod(w.name, w.node, str(v4[0].network_address), w.interface_name,
                            str(v6[0].network_address) if v6 else ""))
    return Scenario(name=name, subnets=(*subnets.values(), EXTERNAL_SUBNET), hosts=tuple(hosts),
                    pods=tuple(pods), externals=(EXTERNAL,))


def seed_scenario(config: Path = SEED_CLUSTER) -> Scenario:
    """The article's cluster: three hosts on subnet 1 (AWS src/dst check on), one on subnet 2."""
    return scenario_from_model(load_model(config.read_text(), str(config)))


@record
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


class IpBatch:
    """What one namespace needs, run as: `ip -batch` (links and addresses), one `sysctl` for every
    setting (after the links exist, before they come up: a link-local address is made at link-up),
    `ip -batch` again (links up, then the routes that need them up).

    The lab's links have no duplicate address detection (`accept_dad=0`, addresses `nodad`): their
    addresses are usable at once, where a tentative link-local address cannot answer neighbour
    solicitations for a second or two."""

    def __init__(self, ns: Netns, *first: str) -> None:
        self.ns = ns
        self.cmds: list[str] = list(first)
        self.sysctls: list[str] = []
        self.ups: list[str] = []
        self.lates: list[str] = []

    def cmd(self, line: str) -> None:
        self.cmds.append(line)

    def sysctl(self, setting: str) -> None:
        self.sysctls.append(setting)

    def up(self, links: Iterable[str]) -> None:
        self.ups.extend(links)

    def late(self, line: str) -> None:
        self.lates.append(line)

    def run(self) -> None:
        run(["ip", "-n", self.ns.name, "-batch", "-"], input="\n".join(self.cmds) + "\n")
        if self.sysctls:
            self.ns.exec("sysctl", "-qw", *self.sysctls)
        later = [f"link set {link} up" for link in self.ups] + self.lates
        if later:
            run(["ip", "-n", self.ns.name, "-batch", "-"], input="\n".join(later) + "\n")


class LabTopology:
    """Builds and tears down a scenario's namespaces. Daemons are the caller's business."""

    def __init__(self, scenario: Scenario, prefix: str = "tl-", state_dir: Path = STATE_DIR) -> None:
        self.scenario = scenario
        self.prefix = prefix
        self.state_dir = state_dir
        self.state = LabState(prefix=prefix, scenario=scenario.name)

    def ns(self, role: str) -> Netns:
        return Netns(self.state.namespaces.get(role, f"{self.prefix}{role}"))

    def _add_ns(self, role: str) -> Netns:
        """One more namespace of the lab (recorded first, so `down` removes it), loopback up."""
        ns = Netns(f"{self.prefix}{role}")
        self.state.namespaces[role] = ns.name
        self.state.save(self.state_dir)
        run(["ip", "netns", "add", ns.name])
        ns.ip("link", "set", "lo", "up")
        return ns

    def _attach(self, fabric: Netns, name: str, address: str, subnet: str, address6: str = "") -> None:
        """One more host on a subnet, after `up` (for hosts that join later)."""
        self._add_ns(name)
        port = _port("vf", name)
        fabric.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", self.ns(name).name)
        fabric.ip("link", "set", port, "master", f"br-{subnet}")
        fabric.ip("link", "set", port, "up")
        self._host_batch(name, address, subnet, address6).run()

    def _add_pod(self, pod: Pod) -> None:
        """One more pod on its host, after `up`."""
        self._add_ns(pod.name)
        host = IpBatch(self.ns(pod.host))
        self._pod_link(host, pod)
        host.run()
        self._pod_batch(pod).run()

    def _host_batch(self, name: str, address: str, subnet: str, address6: str) -> IpBatch:
        sn = self.scenario.subnet(subnet)
        b = IpBatch(self.ns(name), "link set lo up")
        b.cmd(f"addr add {address} dev eth0")
        if address6:
            b.sysctl("net.ipv6.conf.eth0.accept_dad=0")
            b.cmd(f"addr add {address6} dev eth0 nodad")
        b.up(["eth0"])
        b.late(f"route add default via {sn.gateway} dev eth0")
        if address6:
            b.late(f"route add default via {sn.gateway6} dev eth0")
        if name not in {e.name for e in self.scenario.externals}:  # hosts route for their pods
            b.sysctl("net.ipv4.ip_forward=1")
            if address6:
                # Hosts route their pods' IPv6 traffic (Calico's felix sets this too).
                b.sysctl("net.ipv6.conf.all.forwarding=1")
        return b

    def _pod_link(self, host: IpBatch, pod: Pod) -> None:
        host.cmd(f"link add {pod.host_iface} type veth peer name eth0 netns {self.ns(pod.name).name}")
        if pod.ip6:
            # Calico's pod wiring for IPv6: the host side's MAC makes fe80::ecee:eeff:feee:eeee.
            host.cmd(f"link set {pod.host_iface} address {POD_GATEWAY_MAC}")
            host.sysctl(f"net.ipv6.conf.{pod.host_iface}.accept_dad=0")
        host.up([pod.host_iface])

    def _pod_batch(self, pod: Pod) -> IpBatch:
        b = IpBatch(self.ns(pod.name), "link set lo up")
        b.cmd(f"addr add {pod.ip}/32 dev eth0")
        if pod.ip6:
            b.sysctl("net.ipv6.conf.eth0.accept_dad=0")
            b.cmd(f"addr add {pod.ip6}/128 dev eth0 nodad")
        b.up(["eth0"])
        # Calico's pod routing: everything goes to a link-local gateway answered by proxy ARP (IPv4),
        # or to the host side's link-local address (IPv6).
        b.late("route add 169.254.1.1 dev eth0 scope link")
        b.late("route add default via 169.254.1.1 dev eth0")
        if pod.ip6:
            b.late(f"route add default via {POD_GATEWAY_V6} dev eth0")
        return b

    def up(self) -> None:
        """Every namespace, link, address and route, in a few `ip -batch` runs (one per namespace and
        phase) rather than a process per command: under the VM tier's emulation each process start
        costs about a second."""
        sc = self.scenario
        roles = ["fabric", *(h.name for h in sc.hosts), *(e.name for e in sc.externals), *(p.name for p in sc.pods)]
        for role in roles:
            self.state.namespaces[role] = f"{self.prefix}{role}"
        self.state.save(self.state_dir)  # before they exist: `down` can undo a half-made lab
        run(["ip", "-batch", "-"], input="".join(f"netns add {self.ns(r).name}\n" for r in roles))
        attached = [(h.name, h.address, h.subnet, h.address6) for h in sc.hosts] + \
            [(e.name, e.address, e.subnet, "") for e in sc.externals]

        fabric = IpBatch(self.ns("fabric"), "link set lo up")
        fabric.sysctl("net.ipv4.ip_forward=1")
        if sc.dual_stack:
            fabric.sysctl("net.ipv6.conf.all.forwarding=1")
        for sn in sc.subnets:
            br = f"br-{sn.name}"
            fabric.cmd(f"link add {br} type bridge")
            fabric.cmd(f"addr add {sn.gateway}/{ipaddress.ip_network(sn.cidr).prefixlen} dev {br}")
            if sn.cidr6:
                fabric.cmd(f"addr add {sn.gateway6}/{ipaddress.ip_network(sn.cidr6).prefixlen} dev {br} nodad")
                fabric.sysctl(f"net.ipv6.conf.{br}.accept_dad=0")
        for name, _address, subnet, _a6 in attached:
            port = _port("vf", name)
            # Created inside the fabric and moved to the host: neither end ever sits in the root namespace.
            fabric.cmd(f"link add {port} type veth peer name eth0 netns {self.ns(name).name}")
            fabric.cmd(f"link set {port} master br-{subnet}")
        fabric.up(f"br-{sn.name}" for sn in sc.subnets)
        fabric.up(_port("vf", name) for name, *_ in attached)
        fabric.run()

        hosts = {name: self._host_batch(name, address, subnet, address6)
                 for name, address, subnet, address6 in attached}
        for pod in sc.pods:
            self._pod_link(hosts[pod.host], pod)
        for b in hosts.values():
            b.run()
        for pod in sc.pods:
            self._pod_batch(pod).run()
        self.set_srcdst(True)

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
                lines.append(f"    iifname \"{port}\" ether type ip ip saddr != {host.ip} drop")
                rules_post.append(f"    oifname \"{port}\" ether type ip ip daddr != {host.ip} drop")
                if host.ip6:
                    # Neighbour discovery uses link-local sources (and :: during DAD) and multicast
                    # destinations; a cloud network answers or passes those itself.
                    lines.append(f"    iifname \"{port}\" ether type ip6 ip6 saddr != "
                                 f"{{ {host.ip6}, fe80::/10, :: }} drop")
                    rules_post.append(f"    oifname \"{port}\" ether type ip6 ip6 daddr != "
                                      f"{{ {host.ip6}, fe80::/10, ff00::/8 }} drop")
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
