"""A running lab: the topology plus, on every host, tortie-bgpd and tortie-felixd, and pods serving HTTP.

State lives in a lab directory (default /run/tortie-lab): `state.json` (namespaces, PIDs), the shared
`cluster.yaml`, and one run directory per host, so tortiectl can talk to any node's daemons.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lab.netns import Netns, run
from lab.topology import STATE_DIR, LabState, LabTopology, Scenario, scenario_from_model, teardown
from proto.record import record
from proto.resources import load_model

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Our console scripts live beside the interpreter running the lab (the project's venv)."""
    path = BIN / name
    return str(path) if path.exists() else name


@record
class HttpResult:
    src: str
    dst: str
    ok: bool
    detail: str


class Lab:
    def __init__(self, directory: Path = STATE_DIR, prefix: str = "tl-") -> None:
        self.dir = directory
        self.prefix = prefix
        self.topology: LabTopology | None = None
        self.etcd: object | None = None  # lab.etcd.EtcdCluster when this process started the lab on etcd

    # ---------------------------------------------------------------- life cycle

    @property
    def config(self) -> Path:
        return self.dir / "cluster.yaml"

    @property
    def datastore_config(self) -> Path:
        """The CalicoAPIConfig of a lab on etcd (`lab up --datastore etcd`)."""
        return self.dir / "datastore.cfg"

    @property
    def daemon_config(self) -> Path:
        """What the daemons and tortiectl in the lab read: etcd's client config, or the cluster file."""
        return self.datastore_config if self.datastore_config.exists() else self.config

    def run_dir(self, host: str) -> Path:
        return self.dir / "run" / host

    def load(self) -> LabTopology:
        state = LabState.load(self.dir)
        if state is None:
            raise RuntimeError(f"no lab is up (no state in {self.dir}); run `tortiectl lab up`")
        scenario = scenario_from_model(load_model(self.config.read_text(), str(self.config)), state.scenario)
        topo = LabTopology(scenario, state.prefix, self.dir)
        topo.state = state
        self.topology = topo
        return topo

    def up(self, config: Path, daemons: bool = True, datastore: str = "file") -> LabTopology:
        leftover = LabState.load(self.dir)
        if leftover is not None:
            teardown(leftover, self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config, self.config)
        self.datastore_config.unlink(missing_ok=True)
        scenario = scenario_from_model(load_model(self.config.read_text(), str(self.config)), "seed")
        topo = LabTopology(scenario, self.prefix, self.dir)
        self.topology = topo
        try:
            topo.up()
            if datastore == "etcd":
                self._etcd_up(topo)
            for pod in scenario.pods:
                self._start_http(topo, pod.name)
            for ext in scenario.externals:
                self._spawn(topo, f"echo-{ext.name}", ext.name, [sys.executable, "-m", "lab.echo_server", "80"],
                            f"echo-{ext.name}.log")
            if daemons:
                for host in scenario.hosts:
                    self.start_daemons(host.name)
        except BaseException:
            topo.down()
            raise
        return topo

    def _etcd_up(self, topo: LabTopology) -> None:
        """Three etcd members inside the lab, seeded with the cluster file (imported from the fabric,
        which reaches their subnet); the daemons then read etcd."""
        from lab.etcd import client_config_yaml, lab_etcd_up

        self.etcd = lab_etcd_up(topo, self.dir / "etcd")
        cfg = self.dir / "datastore.cfg.new"
        cfg.write_text(client_config_yaml(self.etcd.endpoints))
        env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        subprocess.run(["ip", "netns", "exec", topo.ns("fabric").name, tool("tortiectl"), "--config", str(cfg),
                        "datastore", "migrate", "import", "-f", str(self.config)],
                       check=True, capture_output=True, text=True, timeout=60, env=env)
        cfg.replace(self.datastore_config)

    def down(self) -> list[str]:
        state = LabState.load(self.dir)
        if state is None:
            return []
        return teardown(state, self.dir)

    def _spawn(self, topo: LabTopology, label: str, ns: str, argv: list[str], log_name: str) -> int:
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / log_name, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", topo.ns(ns).name, *argv], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        topo.state.pids[label] = proc.pid
        topo.state.save(self.dir)
        return proc.pid

    def _start_http(self, topo: LabTopology, pod: str) -> None:
        root = self.dir / "www" / pod
        root.mkdir(parents=True, exist_ok=True)
        (root / "index.html").write_text(f"{pod}\n")
        # busybox's httpd starts at once (Python's takes seconds under the VM tier's emulation); both
        # serve IPv4 and IPv6.
        busybox = shutil.which("busybox")
        argv = [busybox, "httpd", "-f", "-p", "80", "-h", str(root)] if busybox else \
            [sys.executable, "-m", "http.server", "80", "--bind", "::", "--directory", str(root)]
        self._spawn(topo, f"http-{pod}", pod, argv, f"http-{pod}.log")

    def start_daemons(self, host: str, which: tuple[str, ...] = ("bgpd", "felixd")) -> None:
        topo = self.topology or self.load()
        rd = self.run_dir(host)
        rd.mkdir(parents=True, exist_ok=True)
        common = ["--config", str(self.daemon_config), "--node", host, "--run-dir", str(rd), "--log-level", "info"]
        for daemon in which:
            self._spawn(topo, f"{daemon}-{host}", host, [tool(f"tortie-{daemon}"), *common], f"{daemon}-{host}.log")

    def stop_daemon(self, label: str, sig: int = 15) -> None:
        topo = self.topology or self.load()
        pid = topo.state.pids.pop(label, None)
        if pid is not None:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        topo.state.save(self.dir)

    # ---------------------------------------------------------------- using it

    def exec(self, target: str, argv: list[str], *, timeout: float = 60,
             capture: bool = True) -> subprocess.CompletedProcess[str]:
        topo = self.topology or self.load()
        if target not in topo.state.namespaces:
            raise KeyError(f"no host or pod called {target!r}; have: {', '.join(topo.state.namespaces)}")
        env = {**os.environ, "TORTIE_CONFIG": str(self.daemon_config), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        host = target if any(h.name == target for h in topo.scenario.hosts) else None
        if host is not None:
            env["TORTIE_RUN_DIR"] = str(self.run_dir(host))
        return subprocess.run(["ip", "netns", "exec", topo.ns(target).name, *argv], env=env, text=True,
                              capture_output=capture, timeout=timeout)

    def http(self, src: str, dst_pod: str, timeout: float = 2.0) -> HttpResult:
        topo = self.topology or self.load()
        pod = next(p for p in topo.scenario.pods if p.name == dst_pod)
        ns = topo.ns(src)
        proc = ns.exec("curl", "-sS", "--max-time", str(timeout), f"http://{pod.ip}/", check=False,
                       timeout=timeout + 5)
        ok = proc.returncode == 0 and proc.stdout.strip() == dst_pod
        return HttpResult(src, dst_pod, ok, proc.stdout.strip() if ok else (proc.stderr.strip() or "no answer"))

    def matrix(self, pairs: list[tuple[str, str]]) -> list[HttpResult]:
        return [self.http(a, b) for a, b in pairs]

    def wait_http(self, src: str, dst: str, want: bool, deadline_s: float) -> tuple[bool, float]:
        """Poll until the request's outcome is `want` or the deadline passes; returns (reached, seconds)."""
        start = time.monotonic()
        while True:
            if self.http(src, dst, timeout=1.0).ok == want:
                return True, time.monotonic() - start
            if time.monotonic() - start > deadline_s:
                return False, time.monotonic() - start

    def ns(self, role: str) -> Netns:
        topo = self.topology or self.load()
        return topo.ns(role)

    def diagnostics(self, hosts: list[str] | None = None, log_lines: int = 40) -> str:
        """What a failed lab test prints: per host its routes, VXLAN neighbours and FDB, links,
        both daemons' status, and the tail of their logs."""
        topo = self.topology or self.load()
        names = hosts or [h.name for h in topo.scenario.hosts]
        out: list[str] = []
        for host in names:
            ns = topo.ns(host)
            out.append(f"===== {host} ({ns.name})")
            for argv in (["ip", "-br", "addr"], ["ip", "-d", "link", "show", "type", "vxlan"],
                         ["ip", "route", "show"], ["ip", "-6", "route", "show"], ["ip", "neigh", "show"],
                         ["bridge", "fdb", "show", "dev", "vxlan.calico"]):
                proc = ns.exec(*argv, check=False, timeout=10)
                out.append(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
            for verb in (["node", "status"], ["routes"]):
                try:
                    proc = self.exec(host, [tool("tortiectl"), *verb], timeout=15)
                    out.append(f"$ tortiectl {' '.join(verb)}\n{proc.stdout}{proc.stderr}")
                except (subprocess.TimeoutExpired, KeyError) as exc:
                    out.append(f"$ tortiectl {' '.join(verb)}: {exc}")
            for daemon in ("bgpd", "felixd"):
                log = self.dir / "logs" / f"{daemon}-{host}.log"
                try:
                    tail = log.read_text(errors="replace").splitlines()[-log_lines:]
                except OSError as exc:
                    tail = [str(exc)]
                out.append(f"--- {log.name} (last {log_lines} lines)\n" + "\n".join(tail))
        for pod in topo.scenario.pods:
            ns = topo.ns(pod.name)
            out.append(f"===== {pod.name} ({ns.name}) on {pod.host}")
            for argv in (["ip", "addr", "show"], ["ip", "route", "show"], ["ss", "-ltnp"]):
                proc = ns.exec(*argv, check=False, timeout=10)
                out.append(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
        return "\n".join(out)

    def srcdst(self, on: bool) -> None:
        (self.topology or self.load()).set_srcdst(on)


def scenario(lab: Lab) -> Scenario:
    return (lab.topology or lab.load()).scenario


__all__ = ["Lab", "run"]
