"""Calico's listen settings and secret passwords with real tortie-bgpd processes in namespaces. Root only.

Two nodes in a mesh: the cluster's BGPConfiguration sets `listenPort: 1179` and `bindMode: None`, a
`node.lb` BGPConfiguration gives node lb its own `listenPort: 2179`, and the mesh password is a
Calico `secretKeyRef` read from each daemon's `--secrets-dir`. Checked with the kernel's socket table:
where each daemon listens (every address, on its own port), that the one connection of the pair goes to
the passive side's port, and that the session carries a TCP MD5 key (a peer without it is refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.netns import NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    PREFIX,
    Bgpd,
    NodeSpec,
    bgp_config_doc,
    bridged_hosts,
    cluster_docs,
    diag,
    pool_doc,
    wait_for,
    write_cluster,
)

# "10.82.0.10" < "10.82.0.9" as text: la (…10) waits, lb (…9) connects to la's port 1179
NODES = [NodeSpec("la", "10.82.0.10", ["10.205.0.0/26"]), NodeSpec("lb", "10.82.0.9", ["10.205.0.64/26"])]
SECRET = {"secretKeyRef": {"name": "bgp-secrets", "key": "mesh"}}


@dataclass
class Listen:
    nss: NetnsSet
    bgpd: dict[str, Bgpd]
    config: Path
    secrets: Path


def node_config(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
            "metadata": {"name": f"node.{name}"}, "spec": spec}


@pytest.fixture(scope="module")
def listen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listen]:
    require_root()
    require_tools("ip", "ss")
    tmp = tmp_path_factory.mktemp("listen")
    secrets = tmp / "secrets"
    (secrets / "bgp-secrets").mkdir(parents=True)
    (secrets / "bgp-secrets" / "mesh").write_text("m3sh-secret\n")
    config = tmp / "cluster.yaml"
    docs = cluster_docs(NODES, [pool_doc("10.205.0.0/16")],
                        config=bgp_config_doc(listenPort=1179, bindMode="None", nodeMeshPassword=SECRET))
    write_cluster(config, [*docs, node_config("lb", listenPort=2179)])
    nss = NetnsSet(prefix=PREFIX)
    try:
        hosts = bridged_hosts(nss, [(n.name, n.address) for n in NODES])
        daemons = {n.name: Bgpd(nss, hosts[n.name], config, tmp / "run" / n.name, "--secrets-dir", str(secrets))
                   for n in NODES}
        for d in daemons.values():
            d.start()
        everyone = diag(*daemons.values())
        for n in NODES:
            other = next(o for o in NODES if o is not n)
            wait_for(lambda d=daemons[n.name], o=other: d.established(o.address), 60,
                     f"{n.name}'s session with {other.name}", diag=everyone)
        yield Listen(nss, daemons, config, secrets)
    finally:
        nss.close()


def listening(ns: object) -> set[str]:
    out = ns.exec("ss", "-Htln").stdout  # type: ignore[attr-defined]
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def test_each_node_listens_on_every_address_on_its_own_port(listen: Listen) -> None:
    la, lb = listen.bgpd["la"], listen.bgpd["lb"]
    assert "0.0.0.0:1179" in listening(la.host.ns), listening(la.host.ns)
    assert "0.0.0.0:2179" in listening(lb.host.ns), listening(lb.host.ns)
    assert not any(a.endswith(":179") for a in listening(la.host.ns) | listening(lb.host.ns))


def test_the_one_connection_goes_to_the_passive_sides_port_with_md5(listen: Listen) -> None:
    la = listen.bgpd["la"]
    out = la.host.ns.exec("ss", "-Htni", "state", "established").stdout
    conns = [line for line in out.splitlines() if ":1179" in line or ":2179" in line]
    assert len(conns) == 1, out  # one connection for the pair
    cols = conns[0].split()
    local, peer = cols[2], cols[3]
    assert local == "10.82.0.10:1179" and peer.startswith("10.82.0.9:"), conns
    assert la.neighbor("10.82.0.9")["source"] == "node-to-node mesh"


def test_a_peer_without_the_secret_is_refused(listen: Listen) -> None:
    """The key from the secrets directory is on the listening socket: a connection without MD5 never
    gets an answer (the kernel drops its segments), while the real session stays up."""
    la, lb = listen.bgpd["la"], listen.bgpd["lb"]
    before = md5_not_found(la.host.ns)
    # from lb's namespace, a plain TCP connect to la's BGP port: MD5 is required, so no handshake
    probe = lb.host.ns.exec("timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/10.82.0.10/1179", check=False)
    assert probe.returncode != 0, "a connection without the TCP MD5 key was accepted"
    assert md5_not_found(la.host.ns) > before  # the kernel dropped it for the missing MD5 option
    assert la.established("10.82.0.9") and lb.established("10.82.0.10")


def md5_not_found(ns: object) -> int:
    text = ns.exec("cat", "/proc/net/netstat").stdout  # type: ignore[attr-defined]
    lines = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
    return int(lines[1][lines[0].index("TCPMD5NotFound")])
