"""tortie's annotations (proto/tortie_annotations.py) through the resource loader and the topology:
misspelled keys and bad values refused with file, line, field and reason; BFD per BGPPeer and for the
mesh from the default BGPConfiguration, defaults 300 ms x 3; single hop on the node's subnet, multihop
beyond; keys read from files; a change of BFD settings alone restarts no BGP session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgpd.topology import TopologyError, build, diff
from proto.resources import ValidationError, load_model
from proto.tortie_annotations import BfdSettings, problems

HEAD = "apiVersion: projectcalico.org/v3\n"


def node(name: str, cidr: str) -> str:
    return f"{HEAD}kind: Node\nmetadata: {{name: {name}}}\nspec:\n  bgp:\n    ipv4Address: {cidr}\n"


def config(annotations: dict[str, str]) -> str:
    lines = "".join(f"    {k}: '{v}'\n" for k, v in annotations.items())
    meta = f"  annotations:\n{lines}" if annotations else ""
    return f"{HEAD}kind: BGPConfiguration\nmetadata:\n  name: default\n{meta}spec: {{}}\n"


def peer(name: str, ip: str, annotations: dict[str, str]) -> str:
    lines = "".join(f"    {k}: '{v}'\n" for k, v in annotations.items())
    return (f"{HEAD}kind: BGPPeer\nmetadata:\n  name: {name}\n  annotations:\n{lines}"
            f"spec: {{node: a, peerIP: {ip}, asNumber: 65001}}\n")


def cluster(*docs: str) -> str:
    return "---\n".join([node("a", "10.1.0.1/24"), node("b", "10.1.0.2/24"), node("c", "10.2.0.3/24"), *docs])


def refused(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_model(text, "cluster.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("annotations", "field", "reason"), [
    ({"bfd.tortie.io/enable": "true"}, "bfd.tortie.io/enable", "did you mean bfd.tortie.io/enabled?"),
    ({"bfd.tortie.io/enabled": "yes"}, "bfd.tortie.io/enabled", "is not \"true\" or \"false\""),
    ({"bfd.tortie.io/enabled": "true", "bfd.tortie.io/min-rx-ms": "5"}, "bfd.tortie.io/min-rx-ms",
     "5 ms is outside 10-60000 ms"),
    ({"bfd.tortie.io/enabled": "true", "bfd.tortie.io/min-tx-ms": "fast"}, "bfd.tortie.io/min-tx-ms",
     "is not a whole number of milliseconds"),
    ({"bfd.tortie.io/enabled": "true", "bfd.tortie.io/multiplier": "0"}, "bfd.tortie.io/multiplier",
     "0 is outside 1-255"),
    ({"bfd.tortie.io/min-rx-ms": "300"}, "bfd.tortie.io/min-rx-ms", "BFD settings without bfd.tortie.io/enabled"),
    ({"bfd.tortie.io/enabled": "true", "bfd.tortie.io/auth": "md5"}, "bfd.tortie.io/auth", "is not one of none"),
    ({"bfd.tortie.io/enabled": "true", "bfd.tortie.io/auth": "keyed-sha1"}, "bfd.tortie.io/auth",
     "authentication needs its key"),
    ({"bfd.tortie.io/enabled": "true", "bfd.tortie.io/auth-key-file": "bfd.key", "bfd.tortie.io/auth": "simple"},
     "bfd.tortie.io/auth-key-file", "is not an absolute path"),
    ({"bdf.tortie.io/enabled": "true"}, "bdf.tortie.io/enabled", "not a tortie annotation"),
    ({"policy.tortie.io/block-ownership": "loose"}, "policy.tortie.io/block-ownership", "is not one of strict, off"),
])
def test_bad_annotations_name_file_line_field_and_reason(annotations: dict[str, str], field: str,
                                                         reason: str) -> None:
    (problem,) = refused(cluster(config(annotations)))
    assert problem.startswith("cluster.yaml: document 4 (BGPConfiguration default), line ")
    assert f"metadata.annotations.{field}: " in problem and reason in problem, problem
    line = int(problem.split("line ")[1].split(":")[0])
    assert field in cluster(config(annotations)).splitlines()[line - 1]


def test_the_line_is_the_annotation_s_own() -> None:
    text = cluster(peer("tor", "10.1.0.254", {"bfd.tortie.io/enabled": "true", "bfd.tortie.io/multipler": "3"}))
    (problem,) = refused(text)
    line = int(problem.split("line ")[1].split(":")[0])
    assert "bfd.tortie.io/multipler" in text.splitlines()[line - 1]
    assert "did you mean bfd.tortie.io/multiplier?" in problem


def test_kinds_that_take_no_bfd_annotations_refuse_them() -> None:
    assert problems("Node", {"bfd.tortie.io/enabled": "true"}) == [
        ("bfd.tortie.io/enabled", "applies to BGPPeer and BGPConfiguration only, not Node")]
    assert problems("BGPPeer", {"policy.tortie.io/block-ownership": "off"})[0][1].startswith(
        "applies to BGPConfiguration only")
    assert problems("BGPPeer", {"example.com/anything": "x", "kubectl.kubernetes.io/last": "y"}) == []


def test_mesh_and_peers_get_their_own_bfd_settings_with_the_usual_defaults(tmp_path: Path) -> None:
    text = cluster(config({"bfd.tortie.io/enabled": "true"}),
                   peer("tor", "10.1.0.254", {"bfd.tortie.io/enabled": "true", "bfd.tortie.io/min-rx-ms": "500",
                                              "bfd.tortie.io/multiplier": "5"}),
                   peer("tor2", "10.1.0.253", {"bfd.tortie.io/enabled": "false"}))
    topo = build(load_model(text), "a")
    assert topo.peers["10.1.0.2"].bfd == BfdSettings()  # 300 ms x 3, single hop
    assert topo.peers["10.2.0.3"].bfd == BfdSettings(multihop=True)  # behind a router
    assert topo.peers["10.1.0.254"].bfd == BfdSettings(min_rx_ms=500, multiplier=5)
    assert topo.peers["10.1.0.253"].bfd is None
    # the mesh without the annotation: no BFD on mesh sessions
    assert build(load_model(cluster()), "a").peers["10.1.0.2"].bfd is None
    # changing BFD alone is no restart of the BGP session
    later = build(load_model(text.replace("'500'", "'300'")), "a")
    d = diff(topo, later)
    assert not d.changed and [p.key for _o, p in d.bfd_changed] == ["10.1.0.254"]


def test_auth_keys_come_from_files(tmp_path: Path) -> None:
    key = tmp_path / "bfd.key"
    key.write_bytes(b"s3cret\n")
    ann = {"bfd.tortie.io/enabled": "true", "bfd.tortie.io/auth": "meticulous-keyed-sha1",
           "bfd.tortie.io/auth-key-id": "4", "bfd.tortie.io/auth-key-file": str(key)}
    topo = build(load_model(cluster(peer("tor", "10.1.0.254", ann))), "a")
    s = topo.peers["10.1.0.254"].bfd
    assert s is not None and (s.auth_type, s.auth_key_id, s.auth_key) == (5, 4, b"s3cret")
    key.write_bytes(b"x" * 21)
    with pytest.raises(TopologyError, match="21 octets: 1 to 20"):
        build(load_model(cluster(peer("tor", "10.1.0.254", ann))), "a")
    key.unlink()
    with pytest.raises(TopologyError, match="cannot read the BFD key of BGPPeer tor"):
        build(load_model(cluster(peer("tor", "10.1.0.254", ann))), "a")


def test_annotations_are_kept_and_written_back() -> None:
    text = cluster(config({"bfd.tortie.io/enabled": "true", "example.com/owner": "ops"}))
    model = load_model(text)
    meta = model.bgp_config.to_dict()["metadata"]
    assert meta["annotations"] == {"bfd.tortie.io/enabled": "true", "example.com/owner": "ops"}
