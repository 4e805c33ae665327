"""The cluster-file loader (`proto.resources.load_model`: YAML, every resource's schema, the whole
cluster's rules), as `tortiectl apply` and the daemons' reload run it.

Input: the file's bytes (not UTF-8: rejected here; the file-level paths are tested in
tests/unit/test_config_abuse.py).
Oracle: a ClusterModel, or ValidationError whose every problem names the file and a line and says
what is wrong, and nothing else; a loaded model dumps to YAML that loads back to an equal model
(resource for resource).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fuzz.oracle import Finding, Rejected
from proto.resources import ValidationError, load_model

NAME = "cluster-file"
MAX_LEN = 8192
# the code this target exercises, for the line coverage the campaign reports
COVERS = ("proto/resources/", "proto/selector.py")
SOURCE = "fuzz.yaml"
REPO = Path(__file__).resolve().parents[2]

DICTIONARY = (
    "apiVersion: projectcalico.org/v3\n", "kind: ", "metadata:\n", "  name: ", "spec:\n", "---\n",
    "BGPConfiguration", "Node", "BGPPeer", "IPPool", "BlockAffinity", "WorkloadEndpoint", "List",
    "items:", "labels:", "asNumber", "nodeToNodeMeshEnabled", "logSeverityScreen", "serviceClusterIPs",
    "bgp:", "ipv4Address", "ipv6Address", "routeReflectorClusterID", "ipv4IPIPTunnelAddr",
    "ipv4VXLANTunnelAddr", "peerIP", "node", "nodeSelector", "peerSelector", "password", "secretKeyRef",
    "maxPrefixes", "keepOriginalNextHop", "cidr", "blockSize", "ipipMode", "vxlanMode", "natOutgoing",
    "disabled", "Always", "Never", "CrossSubnet", "true", "false", "10.0.0.1/24", "fd00::1/64",
    "192.168.0.0/16", "has(", "all()", "==", "'", "\"", "[", "]", "{", "}", "- ", ": ", "&", "*", "!!",
)


def check(data: bytes) -> None:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise Rejected from None
    try:
        model = load_model(text, SOURCE)
    except ValidationError as error:
        if not error.problems:
            raise Finding("ValidationError without problems") from None
        for p in error.problems:
            if p.source != SOURCE or not p.message:
                raise Finding(f"a problem without its file or message: {p!r}") from None
            if p.line is None:
                raise Finding(f"a problem without a line: {p}") from None
        return
    dumped = model.to_yaml()
    try:
        again = load_model(dumped, "dumped.yaml")
    except ValidationError as error:
        raise Finding(f"the dump of a valid model does not load:\n{dumped}\n{error}") from None
    if again != model:
        raise Finding(f"dump and load changed the model:\n{text!r}\n{dumped}")


def seeds() -> Iterator[bytes]:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        yield path.read_bytes()
