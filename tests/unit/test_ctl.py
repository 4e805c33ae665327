"""tortiectl: the article's get/edit/apply round trip, every verb, exit codes, concurrent invocations."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ctl.__main__ import COMMAND_MODULES, command_word, main
from ctl.common import common_options
from datastore import FileDatastore
from tests.unit.test_ds_concurrency import run_together

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "configs" / "seed-cluster.yaml"


class Ran:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def ctl(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run tortiectl in-process against a fresh cluster file; returns (code, stdout, stderr)."""
    config = tmp_path / "cluster.yaml"
    monkeypatch.chdir(tmp_path)

    def run(*args: str, stdin: str | None = None) -> Ran:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(stdin))
        try:
            code = main(["--config", str(config), *args])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    run.config = config  # type: ignore[attr-defined]
    return run


@pytest.fixture
def seeded(ctl):  # type: ignore[no-untyped-def]
    ran = ctl("apply", "-f", str(SEED))
    assert ran.code == 0 and ran.out == "Successfully applied 18 resource(s)\n"  # dual stack: 4 nodes, 2 pools, 8 blocks
    return ctl


@pytest.mark.parametrize("mode", ["Never", "CrossSubnet"])
def test_article_round_trip(seeded, tmp_path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    """`tortiectl get ippool default-ipv4-ippool -o yaml > ippool.yaml`, edit ipipMode, apply."""
    ran = seeded("get", "ippool", "default-ipv4-ippool", "-o", "yaml")
    assert ran.code == 0
    doc = yaml.safe_load(ran.out)
    assert doc["kind"] == "IPPool" and doc["spec"]["ipipMode"] == "Always" and doc["spec"]["blockSize"] == 26
    (tmp_path / "ippool.yaml").write_text(ran.out.replace("ipipMode: Always", f"ipipMode: {mode}"))
    ran = seeded("apply", "-f", "ippool.yaml")
    assert (ran.code, ran.out, ran.err) == (0, "Successfully applied 1 'IPPool' resource(s)\n", "")
    ran = seeded("get", "ippool", "-o", "wide")
    assert ran.out.splitlines()[0].split() == ["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED",
                                               "DISABLEBGPEXPORT", "SELECTOR"]
    assert ran.out.splitlines()[1].split() == ["default-ipv4-ippool", "192.168.0.0/16", "true", mode, "Never",
                                               "false", "false", "all()"]
    assert FileDatastore(seeded.config).load().pool("default-ipv4-ippool").ipip_mode == mode


def test_config_files_of_the_article_apply(seeded) -> None:  # type: ignore[no-untyped-def]
    for name, mode in (("ippool-crosssubnet.yaml", "ipip"), ("ippool-vxlan.yaml", "vxlan"),
                       ("ippool-direct.yaml", None)):
        assert seeded("apply", "-f", str(ROOT / "configs" / name)).code == 0
        assert FileDatastore(seeded.config).load().pool("default-ipv4-ippool").mode == mode


@pytest.mark.parametrize("kind", ["ippool", "nodes", "bgpconfig", "blockaffinity", "wep", "bgppeer"])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_get_output_is_valid_apply_input(seeded, tmp_path: Path, kind: str, fmt: str) -> None:  # type: ignore[no-untyped-def]
    ran = seeded("get", kind, "-o", fmt)
    assert ran.code == 0
    doc = json.loads(ran.out) if fmt == "json" else yaml.safe_load(ran.out)
    assert doc["kind"].endswith("List")
    before = FileDatastore(seeded.config).load()
    (tmp_path / f"out.{fmt}").write_text(ran.out)
    ran = seeded("apply", "-f", f"out.{fmt}") if doc["items"] else Ran(0, "", "")
    assert ran.code in (0, 1)
    if doc["items"]:
        assert ran.code == 0, ran.err
    assert FileDatastore(seeded.config).load() == before  # re-applying what get printed changes nothing


def test_get_tables(seeded) -> None:  # type: ignore[no-untyped-def]
    assert seeded("get", "nodes").out.split() == ["NAME", "master", "worker-1", "worker-2", "worker-3"]
    wide = seeded("get", "node", "-o", "wide").out.splitlines()
    assert wide[1].split() == ["master", "(64512)", "10.30.0.10/24", "fd00:10:30::10/64"]
    assert seeded("get", "wep").out.splitlines()[1].split() == [
        "pod-1", "worker-1", "192.168.226.65/32,fd00:192:168:226::1/128", "cali83dbd022cd5"]
    assert seeded("get", "bgppeers").out.split() == ["NAME", "PEERIP", "NODE", "ASN"]  # none yet
    assert seeded("get", "bgpconfig", "default").out.splitlines()[1].split() == ["default", "Info", "true", "64512"]


def test_apply_from_stdin_and_delete(seeded) -> None:  # type: ignore[no-untyped-def]
    peer = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
            "spec: {peerIP: 10.30.0.1, asNumber: 64513}\n")
    assert seeded("apply", "-f", "-", stdin=peer).out == "Successfully applied 1 'BGPPeer' resource(s)\n"
    assert seeded("get", "bgpp", "tor").out.splitlines()[1].split() == ["tor", "10.30.0.1", "(global)", "64513"]
    ran = seeded("delete", "bgppeer", "tor")
    assert (ran.code, ran.out) == (0, "Successfully deleted 1 'BGPPeer' resource(s)\n")
    ran = seeded("delete", "bgppeer", "tor")
    assert ran.code == 1 and "resource does not exist: BGPPeer(tor)" in ran.err
    assert seeded("delete", "bgppeer", "tor", "--skip-not-exists").code == 0
    assert seeded("apply", "-f", "-", stdin=peer).code == 0
    ran = seeded("delete", "-f", "-", stdin=peer)
    assert (ran.code, ran.out) == (0, "Successfully deleted 1 'BGPPeer' resource(s)\n")
    assert FileDatastore(seeded.config).load().peers == ()


def test_validation_errors_exit_1_naming_file_and_line(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: default-ipv4-ippool\nspec:\n"
        "  cidr: 10.0.0.0/16\n  ipipMode: Sometimes\n")
    ran = seeded("apply", "-f", "bad.yaml")
    assert ran.code == 1 and ran.out == ""
    assert ran.err == ("bad.yaml: document 1 (IPPool default-ipv4-ippool), line 7: spec.ipipMode: 'Sometimes' "
                       "is not one of Never, Always, CrossSubnet\n")
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: default-ipv4-ippool\nspec:\n"
        "  cidr: 10.0.0.0/16\n")
    ran = seeded("apply", "-f", "bad.yaml")
    assert ran.code == 1 and "bad.yaml: document 1 (IPPool default-ipv4-ippool), line 6: spec.cidr: cannot change" in ran.err


def test_slash_32_warning_goes_to_stderr(seeded) -> None:  # type: ignore[no-untyped-def]
    node = ("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: w9}\n"
            "spec: {bgp: {ipv4Address: 10.30.0.99/32}}\n")
    ran = seeded("apply", "-f", "-", stdin=node)
    assert ran.code == 0 and ran.err.startswith("WARNING: <stdin>: document 1 (Node w9), line 4: ")
    assert "is a /32" in ran.err


@pytest.mark.parametrize(("args", "code", "message"), [
    ((), 2, "required"),
    (("get",), 2, "required"),
    (("get", "flowers"), 2, "unknown resource type 'flowers'"),
    (("get", "ippool", "-o", "xml"), 2, "invalid choice"),
    (("delete",), 2, "delete needs -f FILE or KIND NAME"),
    (("delete", "ippool", "x", "-f", "f.yaml"), 2, "either -f FILE or KIND NAME"),
    (("apply",), 2, "-f/--filename"),
    (("apply", "-f", "missing.yaml"), 1, "cannot read missing.yaml"),
    (("get", "ippool", "nope"), 1, "resource does not exist: IPPool(nope)"),
    (("ipam",), 2, "required"),
    (("ipam", "assign-block"), 2, "--node"),
])
def test_exit_codes(seeded, args: tuple[str, ...], code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    ran = seeded(*args)
    assert ran.code == code and message in ran.err


def test_missing_datastore_is_an_error(ctl) -> None:  # type: ignore[no-untyped-def]
    ran = ctl("get", "nodes")
    assert ran.code == 1 and "No such file" in ran.err


def test_ipam(seeded) -> None:  # type: ignore[no-untyped-def]
    ran = seeded("ipam", "assign-block", "--node", "worker-1")
    assert (ran.code, ran.out) == (0, "192.168.0.0/26\n")
    assert seeded("ipam", "assign-block", "--node", "master", "--pool", "default-ipv4-ippool").out == "192.168.0.64/26\n"
    ran = seeded("ipam", "assign-block", "--node", "nobody")
    assert ran.code == 1 and "resource does not exist: Node(nobody)" in ran.err
    ran = seeded("ipam", "show")
    lines = ran.out.splitlines()
    assert lines[1].split() == ["default-ipv4-ippool", "192.168.0.0/16", "26", "1024", "6", "1018"]
    assert ["worker-1", "192.168.0.0/26", "default-ipv4-ippool", "confirmed"] in [line.split() for line in lines]
    assert seeded("get", "blockaffinity", "worker-1-192-168-0-0-26").code == 0


def test_config_option_after_the_verb_and_from_the_environment(seeded, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["get", "nodes", "--config", str(seeded.config)]) == 0
    assert "worker-3" in capsys.readouterr().out
    monkeypatch.setenv("TORTIE_CONFIG", str(seeded.config))
    assert main(["get", "ippools"]) == 0
    assert "default-ipv4-ippool" in capsys.readouterr().out


def test_subcommand_registry_is_open() -> None:
    assert "ctl.resources_cmd" in COMMAND_MODULES and "ctl.ipam_cmd" in COMMAND_MODULES


def test_the_command_table_names_what_each_module_registers() -> None:
    for name, commands in COMMAND_MODULES.items():
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers(dest="command")
        importlib.import_module(name).register(subparsers, common_options())
        assert sorted(subparsers.choices) == sorted(commands), name


@pytest.mark.parametrize(("argv", "word"), [
    (["apply", "-f", "x"], "apply"), (["-c", "f.yaml", "get", "nodes"], "get"), (["--config", "f", "lab", "up"], "lab"),
    (["--config=f", "bgp", "rib"], "bgp"), (["-cf.yaml", "node", "status"], "node"), (["-h"], None), ([], None),
    (["--bogus", "get"], None), (["nosuch"], "nosuch"),
])
def test_the_command_word_is_found_past_the_top_level_options(argv: list[str], word: str | None) -> None:
    assert command_word(argv) == word


def test_a_command_imports_only_its_own_module(seeded) -> None:  # type: ignore[no-untyped-def]
    code = ("import sys; from ctl.__main__ import main; "
            f"code = main(['-c', {str(seeded.config)!r}, 'get', 'nodes']); "
            "print(code, sorted(m for m in sys.modules if m.startswith(('lab', 'ctl.', 'asyncio'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    code_text, loaded = out.strip().splitlines()[-1].split(" ", 1)
    assert code_text == "0"
    assert "ctl.resources_cmd" in loaded and "lab" not in loaded and "asyncio" not in loaded, loaded


def test_an_unknown_command_still_lists_every_command(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        main(["nosuch"])
    err = capsys.readouterr().err
    assert all(command in err for commands in COMMAND_MODULES.values() for command in commands), err


def _tortiectl(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ctl", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _node_file(tmp_path: Path, i: int) -> str:
    path = tmp_path / f"node{i}.yaml"
    path.write_text(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: extra-{i}}}\n"
                    f"spec: {{bgp: {{ipv4Address: 10.30.2.{i + 1}/24}}}}\n")
    return str(path)


def _check_after_concurrency(config: str, n: int, blocks: list[str]) -> None:
    assert len(set(blocks)) == n
    model = FileDatastore(config).load()
    assert {f"extra-{i}" for i in range(n)} <= {node.name for node in model.nodes}
    assert {str(b.cidr) for b in model.blocks} >= set(blocks)
    assert model.revision == 1 + 2 * n


def test_concurrent_tortiectl_processes(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Real `tortiectl` processes at once (the console entry point, interpreter start and all)."""
    config, n = str(seeded.config), 2
    procs = [_tortiectl("--config", config, "apply", "-f", _node_file(tmp_path, i)) for i in range(n)]
    procs += [_tortiectl("--config", config, "ipam", "assign-block", "--node", f"worker-{i + 1}") for i in range(n)]
    results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert all(code == 0 for code, _, _ in results), results
    _check_after_concurrency(config, n, [out.strip() for _, out, _ in results[n:]])


def test_many_concurrent_apply_and_assign_block(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Many tortiectl invocations released together in forked processes: every apply lands, no block is
    handed out twice."""
    config, n = str(seeded.config), 8

    def invoke(*args: str) -> Callable[[], tuple[int, str]]:
        def run() -> tuple[int, str]:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                code = main(["--config", config, *args])
            return code, out.getvalue()
        return run

    targets = [invoke("apply", "-f", _node_file(tmp_path, i)) for i in range(n)]
    targets += [invoke("ipam", "assign-block", "--node", f"worker-{i % 3 + 1}") for i in range(n)]
    results = run_together(targets)
    assert all(code == 0 for code, _ in results), results
    _check_after_concurrency(config, n, [out.strip() for _, out in results[n:]])


def test_invalid_cluster_file_is_reported_and_left_alone(seeded) -> None:  # type: ignore[no-untyped-def]
    broken = seeded.config.read_text().replace("ipipMode: Always", "ipipMode: Sometimes")
    seeded.config.write_text(broken)
    for args in (("get", "nodes"), ("ipam", "assign-block", "--node", "master")):
        ran = seeded(*args)
        assert ran.code == 1 and ran.err.startswith(f"{seeded.config}: document ")
        assert "spec.ipipMode: 'Sometimes' is not one of Never, Always, CrossSubnet" in ran.err
    assert seeded.config.read_text() == broken


CALICO_REFUSALS = """\
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: no-default}
spec:
  importV4: [{action: Reject, cidr: 0.0.0.0/0, matchOperator: Equal}]
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec:
  peerIP: 10.30.0.1
  asNumber: 65001
  reachableBy: fd00::254
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: Upper}
spec: {cidr: 10.5.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeToNodeMeshEnabled: false
  nodeMeshPassword: {secretKeyRef: {name: bgp, key: mesh}}
"""


def test_apply_refusals_name_file_document_field_and_rule_and_change_nothing(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before_text = seeded.config.read_text()
    (tmp_path / "calico.yaml").write_text(CALICO_REFUSALS)
    ran = seeded("apply", "-f", "calico.yaml")
    assert ran.code == 1 and ran.out == ""
    lines = ran.err.splitlines()
    assert lines[0] == ("calico.yaml: document 2 (BGPPeer tor), line 13: spec.reachableBy: ReachableBy and PeerIP "
                        "address family mismatched")
    assert lines[1].startswith("calico.yaml: document 3 (IPPool Upper), line 17: metadata.name: 'Upper': name must "
                               "consist of lower case alphanumeric characters")
    assert lines[2] == ("calico.yaml: document 4 (BGPConfiguration default), line 25: spec.nodeMeshPassword: "
                        "nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false")
    assert seeded.config.read_text() == before_text  # nothing of the file was applied
