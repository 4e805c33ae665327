"""Random and mutated cluster files (tests/soak/config_mutations.py) thrown at everything that reads
one: `tortiectl apply -f`, and both daemons' reload, by file change (inotify) and by SIGHUP.

Every file is one the loader refuses. For each: no crash (tortiectl exits 1 with the error, no
traceback; the daemons stay up), the error names the file and a line, and the running configuration
is untouched (the datastore file byte for byte; the daemons' peers, planned routes and kernel
routes). TORTIE_ABUSE_FILES sets the count per path (`make test`: a bounded sample; `make
soak-long`: 10,000). The daemon part needs root.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctl.__main__ import main as tortiectl
from lab.netns import NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    Bgpd,
    Felixd,
    Host,
    NodeSpec,
    bgp_config_doc,
    bridged_hosts,
    cluster_docs,
    diag,
    peer_doc,
    pool_doc,
    wait_for,
    write_cluster,
)
from tests.soak.config_mutations import invalid_files
from tests.soak.soak_support import daemon_errors

REPO = Path(__file__).resolve().parents[2]
COUNT = int(os.environ.get("TORTIE_ABUSE_FILES", "0")) or None
APPLY_FILES = COUNT or 1000  # in-process: about 10 ms a file
CLI_FILES = 100 if COUNT else 10  # the real executable: a Python start-up (about a second) each
DAEMON_FILES = COUNT or 150  # a reload and a log line from each daemon per file
SEED = REPO / "configs" / "seed-cluster.yaml"


def _apply(store: Path, bad: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = tortiectl(["--config", str(store), "apply", "-f", str(bad)])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


def _says_where(text: str, bad: Path) -> bool:
    return str(bad) in text and "line " in text


# the full count (10,000 files a path) takes most of an hour on a loaded machine
LIMIT = pytest.mark.timeout(14400 if COUNT else 900)


@LIMIT
def test_tortiectl_apply_refuses_every_bad_file_and_keeps_the_store(tmp_path: Path) -> None:
    store = tmp_path / "cluster.yaml"
    code, err = _apply(store, SEED)
    assert code == 0, err
    before = store.read_bytes()
    bad = tmp_path / "bad.yaml"
    for n, (index, data) in enumerate(invalid_files(APPLY_FILES)):
        bad.write_bytes(data)
        code, err = _apply(store, bad)
        where = f"mutated file #{index} (tests/soak/config_mutations.py mutated({index})): {data[:300]!r}"
        assert code == 1, f"{where}: exit {code}\n{err}"
        assert _says_where(err, bad), f"{where}: the error does not name the file and a line:\n{err}"
        assert store.read_bytes() == before, f"{where}: the datastore changed"
        if n < CLI_FILES:  # the real executable: exit status and no traceback
            proc = subprocess.run([str(Path(sys.executable).parent / "tortiectl"), "--config", str(store), "apply",
                                   "-f", str(bad)], capture_output=True, text=True, timeout=60)
            assert proc.returncode == 1 and "Traceback" not in proc.stderr, f"{where}:\n{proc.stderr}"
            assert _says_where(proc.stderr, bad), f"{where}:\n{proc.stderr}"
    assert store.read_bytes() == before


# ---------------------------------------------------------------- the daemons' reload

NODE = NodeSpec("ab", "10.84.0.1", ["10.210.0.0/26"])
TOR = "10.84.0.9"  # a peer that never answers: configured, never Established


@dataclass
class Daemons:
    nss: NetnsSet
    host: Host
    config: Path
    bgpd: Bgpd
    felixd: Felixd


def _good_docs() -> list[dict[str, Any]]:
    return cluster_docs([NODE], [pool_doc("10.210.0.0/16")], config=bgp_config_doc(nodeToNodeMeshEnabled=False),
                        peers=[peer_doc("tor", peerIP=TOR, asNumber=65009)])


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemons]:
    require_root()
    require_tools("ip")
    tmp = tmp_path_factory.mktemp("abuse")
    config = tmp / "cluster.yaml"
    write_cluster(config, _good_docs())
    nss = NetnsSet(prefix="tab")
    try:
        host = bridged_hosts(nss, [(NODE.name, NODE.address)])[NODE.name]
        json_logs = ("--log-level", "info", "--log-format", "json")
        bgpd = Bgpd(nss, host, config, tmp / "run", *json_logs)
        felixd = Felixd(nss, host, config, tmp / "run", *json_logs)
        bgpd.start()
        felixd.start()
        yield Daemons(nss, host, config, bgpd, felixd)
    finally:
        nss.close()


def _refusals(log: Path) -> list[str]:
    """The daemon's 'configuration not reloaded' errors so far."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if doc.get("level") == "error" and "configuration not reloaded" in doc.get("msg", ""):
                out.append(doc["msg"])
    return out


def _running(d: Daemons) -> dict[str, Any]:
    status = d.bgpd.call("status")
    return {
        "peers": sorted((p["address"], p.get("asn") or p.get("peer_as")) for p in status["peers"]),
        "felixd_routes": sorted((r["prefix"], r["kind"]) for r in d.felixd.call("routes")),
        "kernel": sorted(" ".join(line.split())
                         for line in d.host.ns.ip("route", "show", "proto", "80").stdout.splitlines()),
    }


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(".abuse.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@LIMIT
def test_daemons_reload_refuses_every_bad_file_and_keep_running(daemons: Daemons) -> None:
    d = daemons
    everyone = diag(d.bgpd, d.felixd)
    wait_for(lambda: d.felixd.call("status")["ready"], 60, "felixd ready", diag=everyone)
    wait_for(lambda: any(NODE.blocks[0] in r for r in _running(d)["kernel"]), 60, "the local blackhole",
             diag=everyone)
    before = _running(d)
    assert before["peers"] and before["felixd_routes"], before
    logs = {"bgpd": d.bgpd.log_path, "felixd": d.felixd.log_path}
    seen = {name: len(_refusals(p)) for name, p in logs.items()}
    last = None
    for n, (index, data) in enumerate(invalid_files(DAEMON_FILES)):
        if data == last:
            continue  # the same bytes again are no change for the file watch
        last = data
        where = f"mutated file #{index} ({data[:200]!r})"
        _replace(d.config, data)
        if n % 2:  # every other file by SIGHUP, the rest by the file watch alone
            for daemon in (d.bgpd, d.felixd):
                os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        for name, path in logs.items():
            got = wait_for(lambda p=path, k=seen[name]: len(r := _refusals(p)) > k and r, 30,
                           f"{name} to refuse {where}", interval=0.02, diag=everyone)
            seen[name] = len(got)
            assert str(d.config) in got[-1] and "line " in got[-1], f"{name} on {where}: {got[-1]}"
        assert d.bgpd.alive() and d.felixd.alive()
        if n % 25 == 0:
            assert _running(d) == before, f"running configuration changed after {where}"
    assert _running(d) == before
    # refusals are the only errors: no traceback, no exception logged by the watch or a callback
    for name, path in logs.items():
        unexpected = [line for line in daemon_errors(path)
                      if "configuration not reloaded" not in line and "invalid configuration" not in line]
        assert not unexpected, f"{name} logged:\n" + "\n".join(unexpected[:10])
    # a good file again is taken as usual
    write_cluster(d.config, _good_docs())
    for daemon in (d.bgpd, d.felixd):
        os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
    wait_for(lambda: _running(d) == before and d.felixd.call("status")["ready"], 30, "the good file back",
             diag=everyone)


def test_mutations_are_reproducible() -> None:
    from tests.soak.config_mutations import mutated

    assert [mutated(i) for i in range(20)] == [mutated(i) for i in range(20)]
    assert len({mutated(i) for i in range(200)}) > 190
    # some are not even UTF-8, some are not YAML, most are YAML with a wrong field
    kinds = {"binary": 0, "yaml": 0, "field": 0}
    for _, data in invalid_files(300):
        try:
            text = data.decode()
        except UnicodeDecodeError:
            kinds["binary"] += 1
            continue
        try:
            list(yaml.safe_load_all(text))
            kinds["field"] += 1
        except yaml.YAMLError:
            kinds["yaml"] += 1
    assert all(v > 5 for v in kinds.values()), kinds

