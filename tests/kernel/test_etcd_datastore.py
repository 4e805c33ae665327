"""The etcd datastore against a real three-member etcd 3.4 cluster (Debian's etcd-server).

The members listen on 127.0.1.1-3 inside one namespace made for this module; this test process enters
that namespace (setns on its own thread, so the clients' sockets live there), shares the cluster across
the module, and leaves the namespace at the end. A second, single-member cluster serves TLS with client
certificates and user/password authentication, with certificates made for the test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastore.calico_keys import affinity_key, block_key, resource_key
from datastore.etcd_client import ClientConfig, EtcdAuthError, EtcdClient, EtcdTLSError, EtcdUnavailable
from datastore.etcdstore import EtcdDatastore
from datastore.ipam import assign_block, release_blocks
from lab.etcd import EtcdCluster, etcd_missing
from lab.netns import NetnsSet, have_root
from proto.resources import ClusterModel, load_resources
from tests.conftest import require_root

pytestmark = pytest.mark.root

POOL = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.244.0.0/16, blockSize: 26, vxlanMode: Always}
"""


def _node(name: str, address: str) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {name}}}
spec: {{bgp: {{ipv4Address: {address}}}}}
"""


def _resources(text: str) -> list:
    return list(load_resources(text).resources)


@contextlib.contextmanager
def _inside(netns_name: str) -> Iterator[None]:
    from pyroute2.netns import popns, pushns

    pushns(netns_name)
    try:
        yield
    finally:
        popns()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    require_root()
    why = etcd_missing()
    if why:
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("etcd")
    nets = NetnsSet(prefix="tte")
    try:
        ns = nets.add("etcd")
        for i in (1, 2, 3):
            ns.ip("addr", "add", f"127.0.1.{i}/8", "dev", "lo")
        ec = EtcdCluster.create(folder, [(ns, f"127.0.1.{i}") for i in (1, 2, 3)])
        try:
            ec.start()
            with _inside(ns.name):
                yield ec
        finally:
            ec.stop()
    finally:
        nets.close()


@pytest.fixture
def store(cluster: EtcdCluster) -> Iterator[EtcdDatastore]:
    for m in cluster.members:  # a test that stopped members must not leak that into the next one
        if m.pid is None:
            cluster.start_member(m)
    cluster.wait_healthy()
    ds = EtcdDatastore(ClientConfig(tuple(cluster.endpoints)))
    ds.client.delete_prefix("/calico/")
    yield ds
    ds.close()


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def test_apply_reaches_a_watcher_fast(store: EtcdDatastore) -> None:
    store.apply(_resources(POOL + "---" + _node("n1", "10.30.0.1/24")))
    watch = store.watch(probe_interval=1.0)
    try:
        assert {n.name for n in watch.current.nodes} == {"n1"}
        t0 = time.monotonic()
        store.apply(_resources(_node("n2", "10.30.0.2/24")))
        event = watch.get(timeout=5)
        took = time.monotonic() - t0
        assert event.ok and {n.name for n in event.model.nodes} == {"n1", "n2"}
        assert took < 1.0, f"change took {took:.3f}s to reach the watcher"
        assert store.status.up and store.status.revision == event.model.revision
    finally:
        watch.close()
    # what tortie wrote is Calico's layout and JSON
    raw = store.client.get(resource_key("Node", "n2"))
    assert raw is not None
    doc = json.loads(raw.value)
    assert doc["kind"] == "Node" and doc["spec"]["bgp"]["ipv4Address"] == "10.30.0.2/24"
    assert doc["metadata"]["uid"]


def test_reads_what_calico_wrote_and_skips_bad_values(store: EtcdDatastore, caplog: pytest.LogCaptureFixture) -> None:
    pool = {"kind": "IPPool", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": "default-ipv4-ippool", "uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"cidr": "192.168.0.0/16", "ipipMode": "Always", "vxlanMode": "Never", "natOutgoing": True,
                     "blockSize": 26, "nodeSelector": "all()"}}
    store.client.put(resource_key("IPPool", "default-ipv4-ippool"), json.dumps(pool).encode())
    node = {"kind": "Node", "apiVersion": "projectcalico.org/v3", "metadata": {"name": "calico-1"},
            "spec": {"bgp": {"ipv4Address": "10.30.0.5/24"},
                     "addresses": [{"address": "10.30.0.5/24", "type": "CalicoNodeIP"}]}}
    store.client.put(resource_key("Node", "calico-1"), json.dumps(node).encode())
    cidr = ipaddress.ip_network("192.168.7.0/26")
    store.client.put(affinity_key("calico-1", cidr), b'{"state":"confirmed","deleted":false}')
    store.client.put(resource_key("IPPool", "broken"), b"{not json")
    model = store.load()
    assert [p.name for p in model.pools] == ["default-ipv4-ippool"]
    assert [b.cidr for b in model.blocks_for("calico-1")] == [cidr]
    assert "/calico/resources/v3/projectcalico.org/ippools/broken" in caplog.text
    # a watch keeps the good configuration while a bad value arrives
    watch = store.watch()
    try:
        store.client.put(resource_key("Node", "bad"), b'{"spec": {"bgp": {"ipv4Address": "nope"}}}')
        store.apply(_resources(_node("n3", "10.30.0.3/24")))
        event = watch.get(timeout=5)
        assert {n.name for n in event.model.nodes} == {"calico-1", "n3"}
        assert store.status.invalid_values == 2
    finally:
        watch.close()


def test_twenty_concurrent_claimers(store: EtcdDatastore) -> None:
    nodes = "---".join(_node(f"n{i}", f"10.30.0.{i + 1}/24") for i in range(20))
    store.apply(_resources(POOL + "---" + nodes))
    results: dict[int, ipaddress.IPv4Network] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def claim(i: int) -> None:
        ds = EtcdDatastore(store.config)  # its own connection, as on another host
        try:
            start.wait()
            results[i] = assign_block(ds, f"n{i}").cidr  # type: ignore[assignment]
        except BaseException as exc:
            errors.append(exc)
        finally:
            ds.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 20 and len(set(results.values())) == 20, "a block was handed out twice"
    model = store.load()
    stored = {b.node: b.cidr for b in model.blocks}
    assert stored == {f"n{i}": cidr for i, cidr in results.items()}, "a claim was lost"
    for i, cidr in results.items():  # both of Calico's keys, the block affine to its claimer
        blk = store.client.get(block_key(cidr))
        assert blk is not None and json.loads(blk.value)["affinity"] == f"host:n{i}"
        assert store.client.get(affinity_key(f"n{i}", cidr)) is not None
    # release and Node deletion free blocks (both keys go)
    freed = release_blocks(store, blocks=[str(results[0])])
    assert [b.node for b in freed] == ["n0"]
    assert store.client.get(block_key(results[0])) is None
    store.delete([("Node", "n1")])
    assert store.client.get(affinity_key("n1", results[1])) is None
    assert store.client.get(block_key(results[1])) is None
    assert {b.node for b in store.load().blocks} == {f"n{i}" for i in range(2, 20)}


def test_compaction_while_away_lists_again_without_spurious_events(store: EtcdDatastore) -> None:
    store.apply(_resources(POOL + "---" + _node("n1", "10.30.0.1/24")))
    watch = store.watch(backoff_min=600.0)  # away until reconnect_now() below, however slow the writes are
    events: list[ClusterModel] = []
    watch.add_callback(lambda ev: events.append(ev.model))
    try:
        assert watch.following.wait(10)
        watch._client.abort_watches()  # the stream breaks; the watch comes back after its back-off
        _wait(lambda: not watch.following.is_set(), 5, "the stream to break")
        store.apply(_resources(_node("n2", "10.30.0.2/24")))
        store.apply(_resources(_node("n3", "10.30.0.3/24")))
        rev = store.client.count("/calico/")[0]
        store.client.compact(rev)  # the watch's next revision (n2's) is gone
        assert not watch.following.is_set()  # still away: the compaction happened while it was
        watch.reconnect_now()  # from the revision it had: the stream meets the compaction
        _wait(lambda: store.status.resyncs["compacted"] >= 1 and events, 15, "a resync after compaction")
        assert {n.name for n in events[-1].nodes} == {"n1", "n2", "n3"}
        n = len(events)
        watch.check_now()  # a forced list with nothing new delivers nothing
        store.apply(_resources(_node("n4", "10.30.0.4/24")))
        _wait(lambda: len(events) > n, 5, "the next change")
        assert len(events) == n + 1 and {x.name for x in events[-1].nodes} == {"n1", "n2", "n3", "n4"}
    finally:
        watch.close()


def test_one_member_killed_changes_nothing(cluster: EtcdCluster, store: EtcdDatastore) -> None:
    store.apply(_resources(POOL + "---" + _node("n1", "10.30.0.1/24")))
    watch = store.watch(probe_interval=0.5)
    try:
        first = next(m for m in cluster.members if store.client.endpoint.startswith(f"http://{m.address}:"))
        cluster.kill_member(first)
        store.apply(_resources(_node("n2", "10.30.0.2/24")))  # writes still succeed
        event = watch.get(timeout=15)
        assert {n.name for n in event.model.nodes} == {"n1", "n2"}
    finally:
        watch.close()


def test_all_members_down_keeps_the_model_then_resyncs(cluster: EtcdCluster, store: EtcdDatastore,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tortie.datastore")
    store.apply(_resources(POOL + "---" + _node("n1", "10.30.0.1/24")))
    watch = store.watch(probe_interval=0.5, backoff_max=1.0)
    events: list[object] = []
    watch.add_callback(events.append)
    try:
        before = watch.current
        for m in cluster.members:
            cluster.kill_member(m, signal.SIGTERM)
        _wait(lambda: not store.status.up, 10, "the outage to be noticed")
        with pytest.raises(EtcdUnavailable, match=r"127\.0\.1\.1:2379"):
            store.load()
        _wait(lambda: store.status.retries >= 3, 15, "a few retries")
        assert watch.current is before and not events
        assert sum("etcd unreachable" in r.message for r in caplog.records) == 1, "said once"
        assert "unreachable" in store.status.describe()
        for m in cluster.members:
            cluster.start_member(m)
        cluster.wait_healthy()
        _wait(lambda: store.status.up, 20, "etcd to be back")
        assert not events, "a resync with nothing new must deliver nothing"
        store.apply(_resources(_node("n2", "10.30.0.2/24")))
        _wait(lambda: len(events) == 1, 5, "the next change")
    finally:
        watch.close()


# --- TLS with client certificates, and users ---------------------------------------------------

@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    folder = tmp_path_factory.mktemp("etcd-tls")
    ns = cluster.members[0].netns
    ns.ip("addr", "add", "127.0.2.1/8", "dev", "lo")
    ec = EtcdCluster.create(folder, [(ns, "127.0.2.1")], tls=True, client_port=2479, peer_port=2480)
    ec.start()
    try:
        for cmd in (["user", "add", "root:rootpw"], ["user", "add", "tortie:s3cret"], ["role", "add", "calico"],
                    ["role", "grant-permission", "calico", "--prefix=true", "readwrite", "/calico/"],
                    ["user", "grant-role", "tortie", "calico"], ["auth", "enable"]):
            out = ec.etcdctl(*cmd)
            assert out.returncode == 0, out.stderr
        yield ec
    finally:
        ec.stop()


def test_tls_client_certificate_and_password(tls_cluster: EtcdCluster) -> None:
    pki = tls_cluster.pki
    assert pki is not None
    good = ClientConfig(tuple(tls_cluster.endpoints), ca_file=str(pki.ca), cert_file=str(pki.client_cert),
                        key_file=str(pki.client_key), username="tortie", password="s3cret")
    ds = EtcdDatastore(good)
    try:
        ds.apply(_resources(POOL))
        assert [p.name for p in ds.load().pools] == ["pods"]
    finally:
        ds.close()
    wrong = ClientConfig(good.endpoints, ca_file=good.ca_file, cert_file=good.cert_file,
                         key_file=good.key_file, username="tortie", password="nope")
    with EtcdClient(wrong) as c, pytest.raises(EtcdAuthError, match=r"127\.0\.2\.1:2479 refused user 'tortie'"):
        c.count("/calico/")


def test_bad_certificate_and_unreachable_endpoint_each_give_one_clear_error(tls_cluster: EtcdCluster,
                                                                          tmp_path: Path) -> None:
    from lab.etcd import make_pki

    other = make_pki(tmp_path / "other", ["127.0.2.1"], name="someone-else")
    pki = tls_cluster.pki
    assert pki is not None
    # our client certificate is from a CA the server does not trust
    foreign = ClientConfig(tuple(tls_cluster.endpoints), ca_file=str(pki.ca), cert_file=str(other.client_cert),
                           key_file=str(other.client_key), username="tortie", password="s3cret")
    with EtcdClient(foreign) as c, pytest.raises((EtcdTLSError, EtcdUnavailable),
                                                 match=r"127\.0\.2\.1:2479.*(refused the client certificate|"
                                                       r"unknown ca|bad certificate|reset)") as err:
        c.count("/calico/")
    print("foreign client certificate:", err.value)
    # the server's certificate is not from the CA we trust
    distrust = ClientConfig(tuple(tls_cluster.endpoints), ca_file=str(other.ca), cert_file=str(pki.client_cert),
                            key_file=str(pki.client_key))
    with EtcdClient(distrust) as c, pytest.raises(EtcdTLSError, match=r"127\.0\.2\.1:2479.*certificate verify failed"):
        c.count("/calico/")
    with pytest.raises(EtcdTLSError, match=r"missing\.pem"):
        EtcdClient(ClientConfig(tuple(tls_cluster.endpoints), ca_file=str(tmp_path / "missing.pem")))
    with EtcdClient(ClientConfig(("http://127.0.3.9:2379",), timeout=1.0)) as c, \
            pytest.raises(EtcdUnavailable, match=r"127\.0\.3\.9:2379: connection refused"):
        c.count("/calico/")


if not have_root():  # pragma: no cover - the reason shows in pytest -ra
    pytestmark = [pytest.mark.root, pytest.mark.skip(reason="needs root (network namespaces)")]
