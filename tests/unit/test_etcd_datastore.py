"""The etcd datastore's pure parts: Calico's key layout and JSON values, the key index, choosing the
datastore like calicoctl, Calico's address autodetection, and no import cycles in datastore/."""

from __future__ import annotations

import ast
import ipaddress
import json
from pathlib import Path

import pytest

from datastore.apiconfig import ConfigError, from_environment, load_client_config, select
from datastore.calico_keys import (
    AffinityKey,
    BlockKey,
    ResourceKey,
    affinity_key,
    block_key,
    parse_key,
    resource_key,
)
from datastore.calico_values import (
    decode_affinity,
    decode_resource,
    encode_affinity,
    encode_block,
    encode_resource,
    released_block,
)
from datastore.etcd_client import prefix_end
from datastore.etcd_index import KeyIndex
from proto.resources import BlockAffinity, IPPool, Node, ValidationError
from startup.autodetect import AutodetectError, HostInterface, choose, validate

ROOT = Path(__file__).resolve().parents[2]

# What calico-node and calicoctl write into etcd (shapes from Calico's v3 API objects marshalled as JSON)
CALICO_NODE = {
    "kind": "Node", "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "worker-1", "uid": "0b8e6c4a-2c3e-4b3a-9d8e-1f2a3b4c5d6e",
                 "creationTimestamp": "2024-03-01T10:00:00Z",
                 "labels": {"kubernetes.io/hostname": "worker-1"}},
    "spec": {"bgp": {"ipv4Address": "10.30.0.11/24", "ipv4IPIPTunnelAddr": "192.168.1.0"},
             "addresses": [{"address": "10.30.0.11/24", "type": "CalicoNodeIP"}],
             "orchRefs": [{"nodeName": "worker-1", "orchestrator": "k8s"}]},
    "status": {"podCIDRs": ["192.168.1.0/24"]},
}
CALICO_POOL = {
    "kind": "IPPool", "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "default-ipv4-ippool", "uid": "5d0f", "creationTimestamp": "2024-03-01T10:00:00Z"},
    "spec": {"cidr": "192.168.0.0/16", "vxlanMode": "CrossSubnet", "ipipMode": "Never", "natOutgoing": True,
             "blockSize": 26, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"]},
}


def _raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


# --- keys ---------------------------------------------------------------------------------------

def test_resource_keys_are_calicos() -> None:
    assert resource_key("Node", "worker-1") == "/calico/resources/v3/projectcalico.org/nodes/worker-1"
    assert resource_key("IPPool", "p") == "/calico/resources/v3/projectcalico.org/ippools/p"
    assert resource_key("BGPConfiguration", "default") == \
        "/calico/resources/v3/projectcalico.org/bgpconfigurations/default"
    assert resource_key("BGPPeer", "tor") == "/calico/resources/v3/projectcalico.org/bgppeers/tor"
    assert resource_key("WorkloadEndpoint", "w1", "ns1") == \
        "/calico/resources/v3/projectcalico.org/workloadendpoints/ns1/w1"
    assert resource_key("WorkloadEndpoint", "w1") == \
        "/calico/resources/v3/projectcalico.org/workloadendpoints/default/w1"


def test_ipam_keys_are_calicos() -> None:
    v4 = ipaddress.ip_network("192.168.1.64/26")
    v6 = ipaddress.ip_network("fd00:10:244::/122")
    assert affinity_key("worker-1", v4) == "/calico/ipam/v2/host/worker-1/ipv4/block/192.168.1.64-26"
    assert block_key(v4) == "/calico/ipam/v2/assignment/ipv4/block/192.168.1.64-26"
    assert affinity_key("w", v6) == "/calico/ipam/v2/host/w/ipv6/block/fd00:10:244::-122"
    assert parse_key(affinity_key("w", v6)) == AffinityKey("w", v6)
    assert parse_key(block_key(v4)) == BlockKey(v4)


@pytest.mark.parametrize("key, parsed", [
    ("/calico/resources/v3/projectcalico.org/nodes/n1", ResourceKey("Node", "n1")),
    ("/calico/resources/v3/projectcalico.org/workloadendpoints/kube-system/n1-k8s-p-eth0",
     ResourceKey("WorkloadEndpoint", "n1-k8s-p-eth0", "kube-system")),
    ("/calico/resources/v3/projectcalico.org/felixconfigurations/default", None),  # not modelled
    ("/calico/resources/v3/projectcalico.org/nodes/", None),
    ("/calico/ipam/v2/handle/k8s-pod-network.abc", None),
    ("/calico/ipam/v2/host/n1/ipv4/block/not-a-cidr", None),
    ("/calico/ipam/v2/host/n1/ipv6/block/10.0.0.0-26", None),  # version disagrees
    ("/calico/felix/v2/no-region/host/n1/status", None),
])
def test_parse_key(key: str, parsed: object) -> None:
    assert parse_key(key) == parsed


def test_prefix_end() -> None:
    assert prefix_end("/calico/") == b"/calico0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


# --- values -------------------------------------------------------------------------------------

def test_calico_node_value_reads_and_keeps_calicos_fields() -> None:
    key = resource_key("Node", "worker-1")
    node = decode_resource(ResourceKey("Node", "worker-1"), key, _raw(CALICO_NODE))
    assert isinstance(node, Node)
    assert node.ipv4_address == ipaddress.ip_interface("10.30.0.11/24")
    assert str(node.ipv4_ipip_tunnel_addr) == "192.168.1.0"
    assert dict(node.labels) == {"kubernetes.io/hostname": "worker-1"}
    # written back over Calico's value: uid, timestamp, addresses, orchRefs and status survive
    out = json.loads(encode_resource(node, _raw(CALICO_NODE)))
    assert out["metadata"]["uid"] == CALICO_NODE["metadata"]["uid"]
    assert out["metadata"]["creationTimestamp"] == "2024-03-01T10:00:00Z"
    assert out["spec"]["addresses"] == CALICO_NODE["spec"]["addresses"]
    assert out["spec"]["orchRefs"] == CALICO_NODE["spec"]["orchRefs"]
    assert out["status"] == CALICO_NODE["status"]
    assert out["spec"]["bgp"] == CALICO_NODE["spec"]["bgp"]
    assert "resourceVersion" not in out["metadata"]
    # and reads back the same
    assert decode_resource(ResourceKey("Node", "worker-1"), key, encode_resource(node, _raw(CALICO_NODE))) == node


def test_new_value_has_calicos_bookkeeping() -> None:
    pool = decode_resource(ResourceKey("IPPool", "default-ipv4-ippool"), "k", _raw(CALICO_POOL))
    assert isinstance(pool, IPPool) and pool.vxlan_mode == "CrossSubnet" and pool.nat_outgoing
    fresh = json.loads(encode_resource(pool))
    assert fresh["kind"] == "IPPool" and fresh["apiVersion"] == "projectcalico.org/v3"
    assert fresh["metadata"]["name"] == "default-ipv4-ippool"
    assert fresh["metadata"]["uid"] and fresh["metadata"]["creationTimestamp"].endswith("Z")
    assert fresh["spec"]["cidr"] == "192.168.0.0/16" and fresh["spec"]["blockSize"] == 26


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (_raw({**CALICO_POOL, "kind": "Node"}), "stored under the IPPool key"),
    (_raw({**CALICO_POOL, "metadata": {"name": "other"}}), "does not match the key's name"),
    (_raw({**CALICO_POOL, "spec": {**CALICO_POOL["spec"], "ipipMode": "Sometimes"}}), "spec.ipipMode"),
])
def test_bad_values_name_their_key(raw: bytes, message: str) -> None:
    key = resource_key("IPPool", "default-ipv4-ippool")
    with pytest.raises(ValidationError) as err:
        decode_resource(ResourceKey("IPPool", "default-ipv4-ippool"), key, raw)
    assert key in str(err.value) and message in str(err.value)
    assert "document 1" not in str(err.value)


def test_affinity_and_block_values() -> None:
    cidr = ipaddress.ip_network("192.168.1.64/26")
    key = AffinityKey("worker-1", cidr)
    aff = decode_affinity(key, "k", b'{"state":"confirmed","deleted":false}')
    assert aff == BlockAffinity(name="worker-1-192-168-1-64-26", node="worker-1", cidr=cidr)
    assert json.loads(encode_affinity(aff)) == {"state": "confirmed", "deleted": False}
    assert decode_affinity(key, "k", b"").confirmed  # Calico once wrote affinities with no value
    assert decode_affinity(key, "k", b'{"state":"pending","deleted":false}').state == "pending"
    with pytest.raises(ValidationError, match="state"):
        decode_affinity(key, "k", b'{"state":"maybe"}')
    block = json.loads(encode_block(cidr, "worker-1"))
    assert block["cidr"] == "192.168.1.64/26" and block["affinity"] == "host:worker-1"
    assert block["allocations"] == [None] * 64 and block["unallocated"] == list(range(64))
    assert block["attributes"] == [] and block["deleted"] is False
    assert released_block(encode_block(cidr, "worker-1")) is None  # empty: the key goes
    used = {**block, "allocations": [0] + [None] * 63}
    kept = json.loads(released_block(_raw(used)) or b"null")
    assert kept["affinity"] is None and kept["allocations"][0] == 0  # in use: kept, unaffined


# --- the key index ------------------------------------------------------------------------------

def _pool_raw(name: str, cidr: str) -> bytes:
    return _raw({**CALICO_POOL, "metadata": {"name": name}, "spec": {**CALICO_POOL["spec"], "cidr": cidr}})


def test_index_skips_bad_values_and_keeps_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    idx = KeyIndex()
    idx.put(resource_key("IPPool", "a"), _pool_raw("a", "192.168.0.0/16"), 5)
    idx.put(resource_key("IPPool", "b"), b"{broken", 6)
    idx.put(resource_key("Node", "worker-1"), _raw(CALICO_NODE), 7)
    # a second node claiming worker-1's address breaks a cluster-wide rule: it alone is left out
    dup = {**CALICO_NODE, "metadata": {"name": "worker-2"}}
    idx.put(resource_key("Node", "worker-2"), _raw(dup), 8)
    cidr = ipaddress.ip_network("192.168.1.64/26")
    idx.put(affinity_key("worker-1", cidr), b'{"state":"confirmed","deleted":false}', 9)
    model = idx.model()
    assert {r.key for r in model.resources} == {("IPPool", "a"), ("Node", "worker-1"),
                                               ("BlockAffinity", "worker-1-192-168-1-64-26")}
    assert set(idx.invalid) == {resource_key("IPPool", "b"), resource_key("Node", "worker-2")}
    assert "not valid JSON" in caplog.text and "already the address of Node worker-1" in caplog.text
    # reported once, not on every rebuild
    caplog.clear()
    idx.model()
    assert "skipped" not in caplog.text


def test_index_shows_a_block_without_affinity_as_pending() -> None:
    idx = KeyIndex()
    idx.put(resource_key("IPPool", "a"), _pool_raw("a", "192.168.0.0/16"), 5)
    cidr = ipaddress.ip_network("192.168.2.0/26")
    idx.put(block_key(cidr), encode_block(cidr, "gone"), 6)
    (block,) = idx.model().blocks
    assert block.node == "gone" and block.state == "pending" and not block.confirmed


def test_index_replace_all_drops_vanished_keys() -> None:
    idx = KeyIndex()
    idx.put(resource_key("IPPool", "a"), _pool_raw("a", "192.168.0.0/16"), 5)
    idx.replace_all([(resource_key("IPPool", "c"), _pool_raw("c", "10.0.0.0/16"), 9)], 9)
    assert [p.name for p in idx.model().pools] == ["c"] and idx.revision == 9


# --- choosing the datastore ---------------------------------------------------------------------

def test_env_selects_etcd_like_calicoctl(tmp_path: Path) -> None:
    chosen = select(tmp_path / "cluster.yaml", {"ETCD_ENDPOINTS": "https://10.0.0.1:2379, https://10.0.0.2:2379",
                                                "ETCD_CA_CERT_FILE": "/ca.pem", "ETCD_CERT_FILE": "/c.pem",
                                                "ETCD_KEY_FILE": "/k.pem", "ETCD_USERNAME": "u",
                                                "ETCD_PASSWORD": "p"})
    assert chosen.type == "etcdv3" and chosen.etcd is not None
    assert chosen.etcd.endpoints == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert (chosen.etcd.ca_file, chosen.etcd.cert_file, chosen.etcd.key_file) == ("/ca.pem", "/c.pem", "/k.pem")
    assert (chosen.etcd.username, chosen.etcd.password) == ("u", "p")
    # DATASTORE_TYPE=etcdv3 alone: calicoctl's default endpoint
    only_type = from_environment({"DATASTORE_TYPE": "etcdv3"})
    assert only_type is not None and only_type.etcd is not None
    assert only_type.etcd.endpoints == ("http://127.0.0.1:2379",)


def test_nothing_set_means_the_cluster_file(tmp_path: Path) -> None:
    chosen = select(tmp_path / "cluster.yaml", {}, default_cluster_file="/nonexistent/cluster.yaml")
    assert chosen.type == "file" and chosen.path == tmp_path / "cluster.yaml"
    assert select(tmp_path / "c.yaml", {"DATASTORE_TYPE": "file", "ETCD_ENDPOINTS": "http://x:1"}).type == "file"
    with pytest.raises(ConfigError, match="kubernetes"):
        select(tmp_path / "c.yaml", {"DATASTORE_TYPE": "kubernetes"})
    with pytest.raises(ConfigError, match="needs a scheme"):
        select(tmp_path / "c.yaml", {"ETCD_ENDPOINTS": "10.0.0.1:2379"})


def test_calicoapiconfig_file(tmp_path: Path) -> None:
    cfg = tmp_path / "datastore.cfg"
    cfg.write_text("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec:\n"
                   "  datastoreType: etcdv3\n  etcdEndpoints: https://10.99.0.1:2379,https://10.99.0.2:2379\n"
                   "  etcdCACertFile: /etc/tortie/ca.pem\n  etcdUsername: tortie\n  etcdPassword: secret\n"
                   "  etcdCACert: |\n    -----BEGIN CERTIFICATE-----\n")
    chosen = select(cfg, {})  # --config naming a CalicoAPIConfig wins over the environment
    assert chosen.type == "etcdv3" and chosen.source == str(cfg) and chosen.etcd is not None
    assert chosen.etcd.endpoints == ("https://10.99.0.1:2379", "https://10.99.0.2:2379")
    assert chosen.etcd.username == "tortie" and chosen.etcd.password == "secret"
    # the inline CA (etcdCACert) is written to a private file and used
    assert chosen.etcd.ca_file and Path(chosen.etcd.ca_file).read_text().startswith("-----BEGIN")
    assert Path(chosen.etcd.ca_file).stat().st_mode & 0o777 == 0o600
    bad = tmp_path / "bad.cfg"
    bad.write_text("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  etcdEndpoint: http://x:1\n")
    with pytest.raises(ConfigError, match=r"bad.cfg: spec.etcdEndpoint: unknown field"):
        load_client_config(bad)


def test_default_client_config_file_applies_only_to_the_default_cluster_file(tmp_path: Path) -> None:
    cfg = tmp_path / "datastore.cfg"
    cfg.write_text("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n"
                   "  etcdEndpoints: http://10.99.0.1:2379\n")
    env = {"TORTIE_DATASTORE_CONFIG": str(cfg)}
    default = tmp_path / "cluster.yaml"
    assert select(default, env, default_cluster_file=default).type == "etcdv3"
    assert select(tmp_path / "other.yaml", env, default_cluster_file=default).type == "file"


# --- address autodetection (Calico's IP_AUTODETECTION_METHOD) ----------------------------------

HOST = [
    HostInterface("lo", 1, (ipaddress.ip_interface("127.0.0.1/8"),)),
    HostInterface("eth0", 2, (ipaddress.ip_interface("fe80::1/64"), ipaddress.ip_interface("10.30.0.11/24"))),
    HostInterface("eth1", 3, (ipaddress.ip_interface("172.16.5.2/16"),)),
    HostInterface("docker0", 4, (ipaddress.ip_interface("172.17.0.1/16"),)),
    HostInterface("cali1234567890a", 5, (ipaddress.ip_interface("169.254.1.1/32"),)),
]


@pytest.mark.parametrize("method, expected", [
    ("first-found", "172.16.5.2/16"),  # reverse index order, docker0 and lo excluded
    ("interface=eth0", "10.30.0.11/24"),
    ("interface=eth9,eth0", "10.30.0.11/24"),
    ("skip-interface=eth1", "10.30.0.11/24"),
    ("cidr=10.30.0.0/16", "10.30.0.11/24"),
    ("cidr=192.168.0.0/16, 172.17.0.0/16", "172.17.0.1/16"),  # cidr= has no default exclusions
    ("can-reach=10.30.1.20", "10.30.0.11/24"),
])
def test_autodetection_methods(method: str, expected: str) -> None:
    reach = {"10.30.1.20": ipaddress.ip_address("10.30.0.11")}
    assert str(choose(method, HOST, 4, lambda dest, v: reach[dest])) == expected


@pytest.mark.parametrize("method, message", [
    ("sometimes", "is not one of"),
    ("interface=", "no interface regex"),
    ("interface=eth[", "bad regular expression"),
    ("cidr=10.0.0.0/33", "is not a CIDR"),
    ("can-reach=", "no destination"),
])
def test_bad_methods(method: str, message: str) -> None:
    with pytest.raises(AutodetectError, match=message):
        validate(method)


def test_no_address_found_says_so() -> None:
    with pytest.raises(AutodetectError, match="no IPv4 address found"):
        choose("interface=wlan.*", HOST)


# --- structure ----------------------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):  # TYPE_CHECKING imports count too
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_no_import_cycles_in_datastore() -> None:
    modules = {p.stem if p.stem != "__init__" else "": p for p in (ROOT / "datastore").glob("*.py")}
    names = {(f"datastore.{m}" if m else "datastore"): p for m, p in modules.items()}
    graph = {name: {i for i in _imports(path) if i in names and i != name} for name, path in names.items()}
    seen: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node):], node]))
        if node in seen:
            return
        stack.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        stack.pop()
        seen.add(node)

    for name in sorted(graph):
        visit(name)


@pytest.mark.parametrize(("env", "ssl_loaded"), [({"ETCD_ENDPOINTS": "http://127.0.0.1:2379"}, True),
                                                 ({"DATASTORE_TYPE": "file"}, False)])
def test_entry_point_keeps_ssl_out_only_for_the_file_datastore(tmp_path: Path, env: dict[str, str],
                                                               ssl_loaded: bool) -> None:
    # an etcd over plain http still needs ssl importable: its HTTP client imports it (this once broke
    # every daemon of an etcd cluster at start)
    import os
    import subprocess
    import sys

    code = ("import sys; from runtime.lean import tls_only_if_needed; "
            f"tls_only_if_needed({str(tmp_path / 'cluster.yaml')!r}); "
            "import asyncio; "
            "__import__('datastore.etcdstore') if sys.modules.get('ssl') else None; "
            "print(sys.modules.get('ssl') is not None)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "DATASTORE_"))}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(ssl_loaded)
