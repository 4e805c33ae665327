"""Real etcd members (Debian's etcd-server 3.4) in network namespaces, for the lab, tests and benchmarks.

Each member runs in a namespace the caller created, listening for clients and peers on its own address
there; `EtcdCluster` starts, kills and restarts members by PID and waits on etcd's own health endpoint
(polled with a deadline). `make_pki` writes a private CA with server and client certificates (openssl),
so tests check TLS with client certificates without touching anything outside their directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import field
from pathlib import Path

from lab.netns import Netns
from proto.record import record

ETCD = "/usr/bin/etcd"


def etcd_missing() -> str | None:
    """Why etcd members cannot run here, or None."""
    if shutil.which("etcd") is None and not os.path.exists(ETCD):
        return "etcd is not installed (Debian etcd-server; scripts/setup.sh installs it)"
    if shutil.which("openssl") is None:
        return "openssl is not installed"
    return None


@record(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path, addresses: list[str], name: str = "tortie-test") -> Pki:
    """A CA, a server certificate for `addresses` (as IP SANs) and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name} CA", cwd=folder)
    sans = ",".join(f"IP:{a}" for a in addresses)
    # The client certificate has no CommonName: etcd 3.4's gRPC gateway refuses a request whose client
    # certificate carries one ("CommonName of client sending a request against gateway will be ignored"),
    # since it cannot pass the name on as the etcd user; users authenticate by password instead.
    for who, ext, subj in (("server", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\n",
                            f"/CN={name} server"),
                           ("client", "extendedKeyUsage=clientAuth\n", f"/O={name} client")):
        (folder / f"{who}.ext").write_text(ext)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", subj, cwd=folder)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext", cwd=folder)
    return Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "client.pem",
               folder / "client.key")


@record
class EtcdMember:
    name: str
    netns: Netns
    address: str
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None


@record
class EtcdCluster:
    members: list[EtcdMember]
    pki: Pki | None = None
    client_port: int = 2379
    peer_port: int = 2380
    token: str = "tortie"
    extra_args: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, folder: Path, placement: list[tuple[Netns, str]], *, tls: bool = False,
               **kwargs: object) -> EtcdCluster:
        """Members m1..mN, the i-th in `placement[i]` (namespace, address)."""
        members = [EtcdMember(f"m{i + 1}", ns, addr, folder / f"m{i + 1}") for i, (ns, addr) in enumerate(placement)]
        pki = make_pki(folder / "pki", [addr for _, addr in placement]) if tls else None
        return cls(members, pki, **kwargs)  # type: ignore[arg-type]

    @property
    def scheme(self) -> str:
        return "https" if self.pki else "http"

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.scheme}://{m.address}:{self.client_port}" for m in self.members]

    def _args(self, m: EtcdMember) -> list[str]:
        peers = ",".join(f"{x.name}=http://{x.address}:{self.peer_port}" for x in self.members)
        url = f"{self.scheme}://{m.address}:{self.client_port}"
        args = [ETCD, "--name", m.name, "--data-dir", str(m.folder / "data"),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", f"http://{m.address}:{self.peer_port}",
                "--initial-advertise-peer-urls", f"http://{m.address}:{self.peer_port}",
                "--initial-cluster", peers, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr",
                # short elections: the lab's members share two busy cores
                "--heartbeat-interval", "100", "--election-timeout", "1000", *self.extra_args]
        if self.pki is not None:
            args += ["--cert-file", str(self.pki.server_cert), "--key-file", str(self.pki.server_key),
                     "--trusted-ca-file", str(self.pki.ca), "--client-cert-auth"]
        return args

    def start_member(self, m: EtcdMember) -> None:
        m.folder.mkdir(parents=True, exist_ok=True)
        log = open(m.folder / "etcd.log", "ab")  # noqa: SIM115 - the member keeps it
        m.process = m.netns.popen(*self._args(m), stdout=log, stderr=log)
        log.close()

    def start(self, timeout: float = 60.0) -> None:
        for m in self.members:
            self.start_member(m)
        self.wait_healthy(timeout)

    def kill_member(self, m: EtcdMember, sig: int = signal.SIGKILL) -> None:
        if m.process is not None and m.process.poll() is None:
            m.process.send_signal(sig)
            m.process.wait(timeout=30)
        m.process = None

    def stop(self) -> None:
        for m in self.members:
            self.kill_member(m, signal.SIGTERM)

    def healthy(self, m: EtcdMember) -> bool:
        """Whether the member serves linearizable requests (etcd's /health: it has a leader)."""
        try:
            out = m.netns.exec("curl", "-s", "--max-time", "2", *self._curl_tls(),
                               f"{self.scheme}://{m.address}:{self.client_port}/health", check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return '"health":"true"' in out.stdout

    def _curl_tls(self) -> list[str]:
        if self.pki is None:
            return []
        return ["--cacert", str(self.pki.ca), "--cert", str(self.pki.client_cert), "--key", str(self.pki.client_key)]

    def wait_healthy(self, timeout: float = 60.0, members: list[EtcdMember] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for m in members or [x for x in self.members if x.process is not None]:
            while not self.healthy(m):
                if m.process is not None and m.process.poll() is not None:
                    raise RuntimeError(f"etcd member {m.name} exited: {self.log_tail(m)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd member {m.name} not healthy in {timeout}s: {self.log_tail(m)}")
                time.sleep(0.1)

    def log_tail(self, m: EtcdMember, lines: int = 5) -> str:
        try:
            return "\n".join((m.folder / "etcd.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def etcdctl(self, *args: str, netns: Netns | None = None, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
        tls = [] if self.pki is None else [f"--cacert={self.pki.ca}", f"--cert={self.pki.client_cert}",
                                           f"--key={self.pki.client_key}"]
        ns = netns or self.members[0].netns
        cmd = ["ip", "netns", "exec", ns.name, "etcdctl", f"--endpoints={','.join(self.endpoints)}", *tls, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "ETCDCTL_API": "3", **(env or {})})


# --- the lab's etcd: three members on their own subnet behind the lab's fabric -------------------

LAB_ETCD_SUBNET = "10.99.0.0/24"
LAB_ETCD_GATEWAY = "10.99.0.1"
LAB_ETCD_ADDRESSES = ("10.99.0.11", "10.99.0.12", "10.99.0.13")


def lab_etcd_up(topo: object, folder: Path) -> EtcdCluster:
    """Three members in namespaces `etcd-1..3` of the lab (`lab.topology.LabTopology`), attached to a bridge
    in its fabric on their own subnet; the hosts reach them through the fabric's routing. Members are
    recorded in the lab's state, so `lab down` stops them and removes their namespaces."""
    fabric = topo.ns("fabric")  # type: ignore[attr-defined]
    fabric.ip("link", "add", "br-etcd", "type", "bridge")
    fabric.ip("addr", "add", f"{LAB_ETCD_GATEWAY}/24", "dev", "br-etcd")
    fabric.ip("link", "set", "br-etcd", "up")
    placement = []
    for i, address in enumerate(LAB_ETCD_ADDRESSES, start=1):
        ns = topo._add_ns(f"etcd-{i}")  # type: ignore[attr-defined]
        port = f"vetcd{i}"
        # created inside the fabric and moved: no end ever sits in the root namespace
        fabric.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        fabric.ip("link", "set", port, "master", "br-etcd")
        fabric.ip("link", "set", port, "up")
        ns.ip("addr", "add", f"{address}/24", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        ns.ip("route", "add", "default", "via", LAB_ETCD_GATEWAY, "dev", "eth0")
        placement.append((ns, address))
    cluster = EtcdCluster.create(folder, placement)
    cluster.start()
    record_pids(topo, cluster)
    return cluster


def record_pids(topo: object, cluster: EtcdCluster) -> None:
    state = topo.state  # type: ignore[attr-defined]
    for m in cluster.members:
        if m.pid is not None:
            state.pids[f"etcd-{m.name}"] = m.pid
        else:
            state.pids.pop(f"etcd-{m.name}", None)
    state.save(topo.state_dir)  # type: ignore[attr-defined]


def client_config_yaml(endpoints: list[str]) -> str:
    """A CalicoAPIConfig (calicoctl's client configuration) for these endpoints."""
    return ("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec:\n"
            f"  datastoreType: etcdv3\n  etcdEndpoints: {','.join(endpoints)}\n")
