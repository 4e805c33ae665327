"""The full-table set-up that ingest.py and datapath.py share: a BIRD 2 sender, a tortie host and a
BIRD 2 receiver, each in its own namespace on one bridge.

The sender (AS 65001) holds N prefixes in a static protocol inside the cluster file's 10.0.0.0/8 pool
and has one eBGP session, disabled until a round enables it, to each receiver (AS 64512). tortie's
cluster file names the sender as a BGPPeer of the Node `tortie`; the pool has no encapsulation, so
felixd installs the routes `via <sender> dev eth0 proto 80`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.birdctl import bird_conf, kernel_export

SPEAKER, TORTIE, BIRD = "10.90.0.1", "10.90.0.2", "10.90.0.3"
HOSTS = [("spk", f"{SPEAKER}/24"), ("tor", f"{TORTIE}/24"), ("brd", f"{BIRD}/24")]
SPEAKER_AS, RECEIVER_AS = 65001, 64512
POOL = "10.0.0.0/8"


def speaker_conf(work: Path, routes: list[str]) -> str:
    body = ["protocol static bench_routes {", "  ipv4;", *(f"  route {p} blackhole;" for p in routes), "}"]
    for name, peer in (("to_tortie", TORTIE), ("to_bird", BIRD)):
        body += [f"protocol bgp {name} {{", "  disabled on;", f"  local {SPEAKER} as {SPEAKER_AS};",
                 f"  neighbor {peer} as {RECEIVER_AS};", "  ipv4 { import none; export all; };", "}"]
    return bird_conf(SPEAKER, work / "speaker.log", body)


def receiver_conf(work: Path, to_kernel: bool) -> str:
    """The BIRD 2 receiver; with `to_kernel` it exports its table to its namespace's kernel."""
    body = ["protocol bgp from_speaker {", f"  local {BIRD} as {RECEIVER_AS};",
            f"  neighbor {SPEAKER} as {SPEAKER_AS};", "  passive on;", "  ipv4 { import all; export none; };", "}"]
    if to_kernel:
        body += kernel_export()
    return bird_conf(BIRD, work / "receiver.log", body)


def cluster(path: Path) -> None:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": RECEIVER_AS, "nodeToNodeMeshEnabled": False, "logSeverityScreen": "Warning"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "tortie"},
         "spec": {"bgp": {"ipv4Address": f"{TORTIE}/24"}}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "bench"},
         "spec": {"cidr": POOL, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "speaker"},
         "spec": {"peerIP": SPEAKER, "asNumber": SPEAKER_AS}},
    ]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
