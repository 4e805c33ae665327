"""The planner's input built from a cluster file: the article's worker-1 gets the article's routes."""

from __future__ import annotations

from ipaddress import ip_interface

from felixd.inputs import plan_input
from felixd.plan import HostAddress, HostRoute, plan
from felixd.state import Mode
from proto import prefix as pf
from proto.resources import load_model

HEAD = "apiVersion: projectcalico.org/v3\n"
CLUSTER = "---\n".join([
    f"{HEAD}kind: Node\nmetadata: {{name: worker-1}}\nspec: {{bgp: {{ipv4Address: 10.30.0.206/24}}}}\n",
    f"{HEAD}kind: Node\nmetadata: {{name: worker-3}}\nspec: {{bgp: {{ipv4Address: 10.30.1.66/24}}}}\n",
    f"{HEAD}kind: IPPool\nmetadata: {{name: default-ipv4-ippool}}\n"
    "spec: {cidr: 192.168.0.0/16, blockSize: 26, vxlanMode: CrossSubnet, natOutgoing: true}\n",
    f"{HEAD}kind: BlockAffinity\nmetadata: {{name: w1}}\nspec: {{node: worker-1, cidr: 192.168.226.64/26}}\n",
    f"{HEAD}kind: BlockAffinity\nmetadata: {{name: w3}}\nspec: {{node: worker-3, cidr: 192.168.97.192/26}}\n",
    f"{HEAD}kind: WorkloadEndpoint\nmetadata: {{name: pod-1}}\n"
    "spec: {node: worker-1, interfaceName: cali1b8e4f2a7c0, ipNetworks: [192.168.226.65/32]}\n",
])


def test_cluster_file_to_plan() -> None:
    model = load_model(CLUSTER)
    data = plan_input(model, "worker-1", {pf.parse("192.168.97.192/26"): pf.parse_address("10.30.1.66")},
                      (HostAddress("eth0", ip_interface("10.30.0.206/24")),),
                      (HostRoute(pf.parse("0.0.0.0/0"), pf.parse_address("10.30.0.1"), "eth0"),))
    state = plan(data)
    r = state.routes[pf.parse("192.168.97.192/26")]
    assert (pf.address_text(r.gateway), r.dev, r.onlink, r.mode) == ("192.168.97.192", "vxlan.calico", True,
                                                                      Mode.VXLAN)
    assert state.routes[pf.parse("192.168.226.65/32")].dev == "cali1b8e4f2a7c0"
    assert state.vxlan is not None and state.vxlan.address == "192.168.226.64/32"
    assert state.nat.nat_pools_v4 == {"192.168.0.0/16"}
