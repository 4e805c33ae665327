"""`tortiectl get`, `apply` and `delete`: calicoctl's resource verbs on the cluster datastore."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from ctl.common import EXIT_OK, CtlError, UsageError, open_store, print_table, print_warnings
from proto.resources import (
    KINDS,
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    ClusterModel,
    IPPool,
    Node,
    Resource,
    WorkloadEndpoint,
    decode_text,
    kind_for,
    list_dict,
    load_resources,
)

Column = tuple[str, Callable[[Any, ClusterModel], Any]]


def _node_asn(node: Node, model: ClusterModel) -> str:
    # calicoctl shows an inherited AS number in parentheses
    return str(node.as_number) if node.as_number is not None else f"({model.bgp_config.as_number})"


# (default columns, wide columns) per kind, as calicoctl prints them.
TABLES: dict[type[Resource], tuple[list[Column], list[Column]]] = {
    IPPool: ([("NAME", lambda r, m: r.name), ("CIDR", lambda r, m: r.cidr), ("SELECTOR", lambda r, m: r.node_selector)],
             [("NAME", lambda r, m: r.name), ("CIDR", lambda r, m: r.cidr), ("NAT", lambda r, m: str(r.nat_outgoing).lower()),
              ("IPIPMODE", lambda r, m: r.ipip_mode), ("VXLANMODE", lambda r, m: r.vxlan_mode),
              ("DISABLED", lambda r, m: str(r.disabled).lower()),
              ("DISABLEBGPEXPORT", lambda r, m: str(r.disable_bgp_export).lower()),
              ("SELECTOR", lambda r, m: r.node_selector)]),
    Node: ([("NAME", lambda r, m: r.name)],
           [("NAME", lambda r, m: r.name), ("ASN", _node_asn), ("IPV4", lambda r, m: r.ipv4_address),
            ("IPV6", lambda r, m: r.ipv6_address), ("RRCLUSTERID", lambda r, m: r.route_reflector_cluster_id)]),
    BGPPeer: ([("NAME", lambda r, m: r.name), ("PEERIP", lambda r, m: r.peer_ip), ("NODE", lambda r, m: _peer_node(r)),
               ("ASN", lambda r, m: r.as_number)],
              [("NAME", lambda r, m: r.name), ("PEERIP", lambda r, m: r.peer_ip), ("NODE", lambda r, m: _peer_node(r)),
               ("ASN", lambda r, m: r.as_number), ("LOCALASN", lambda r, m: r.local_as_number),
               ("PEERSELECTOR", lambda r, m: r.peer_selector), ("MAXPREFIXES", lambda r, m: r.max_prefixes)]),
    BGPFilter: ([("NAME", lambda r, m: r.name)],
                [("NAME", lambda r, m: r.name), ("EXPORTV4", lambda r, m: len(r.export_v4)),
                 ("IMPORTV4", lambda r, m: len(r.import_v4)), ("EXPORTV6", lambda r, m: len(r.export_v6)),
                 ("IMPORTV6", lambda r, m: len(r.import_v6))]),
    BGPConfiguration: ([("NAME", lambda r, m: r.name), ("LOGSEVERITY", lambda r, m: r.log_severity_screen),
                        ("MESHENABLED", lambda r, m: str(r.node_to_node_mesh_enabled).lower()),
                        ("ASNUMBER", lambda r, m: r.as_number)],
                       [("NAME", lambda r, m: r.name), ("LOGSEVERITY", lambda r, m: r.log_severity_screen),
                        ("MESHENABLED", lambda r, m: str(r.node_to_node_mesh_enabled).lower()),
                        ("ASNUMBER", lambda r, m: r.as_number), ("LISTENPORT", lambda r, m: r.listen_port)]),
    BlockAffinity: ([("NAME", lambda r, m: r.name), ("NODE", lambda r, m: r.node), ("CIDR", lambda r, m: r.cidr)],
                    [("NAME", lambda r, m: r.name), ("NODE", lambda r, m: r.node), ("CIDR", lambda r, m: r.cidr),
                     ("STATE", lambda r, m: r.state)]),
    WorkloadEndpoint: ([("NAME", lambda r, m: r.name), ("NODE", lambda r, m: r.node),
                        ("NETWORKS", lambda r, m: ",".join(map(str, r.ip_networks))),
                        ("INTERFACE", lambda r, m: r.interface_name)],
                       [("NAME", lambda r, m: r.name), ("NODE", lambda r, m: r.node),
                        ("NETWORKS", lambda r, m: ",".join(map(str, r.ip_networks))),
                        ("INTERFACE", lambda r, m: r.interface_name), ("MAC", lambda r, m: r.mac)]),
}


def _peer_node(peer: BGPPeer) -> str:
    if peer.node is not None:
        return peer.node
    if peer.node_selector is not None:
        return str(peer.node_selector)
    return "(global)"


def resolve_kind(name: str) -> type[Resource]:
    try:
        return kind_for(name)
    except KeyError:
        known = ", ".join(sorted(cls.aliases[0] for cls in KINDS.values()))
        raise UsageError(f"unknown resource type {name!r} (known: {known})") from None


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    get = subparsers.add_parser("get", parents=[common], help="show resources",
                                description="Show resources of one kind, or one resource by name.")
    get.add_argument("kind", help="resource type: ippool, node, bgppeer, bgpfilter, bgpconfig, blockaffinity, wep")
    get.add_argument("name", nargs="?", help="resource name (default: all of the kind)")
    get.add_argument("-o", "--output", choices=("ps", "wide", "yaml", "json"), default="ps",
                     help="output format (yaml and json are valid input to apply)")
    get.set_defaults(handler=cmd_get)

    apply = subparsers.add_parser("apply", parents=[common], help="create or update resources from a file")
    apply.add_argument("-f", "--filename", required=True, help="YAML file of resources, '-' for stdin")
    apply.set_defaults(handler=cmd_apply)

    delete = subparsers.add_parser("delete", parents=[common], help="delete resources",
                                   description="Delete the resources of a file, or one by kind and name.")
    delete.add_argument("kind", nargs="?")
    delete.add_argument("name", nargs="?")
    delete.add_argument("-f", "--filename", help="YAML file of resources to delete, '-' for stdin")
    delete.add_argument("--skip-not-exists", action="store_true",
                        help="do not fail on resources that do not exist")
    delete.set_defaults(handler=cmd_delete)


def cmd_get(args: argparse.Namespace) -> int:
    cls = resolve_kind(args.kind)
    model = open_store(args).load()
    if args.name is not None:
        found: Sequence[Resource] = [model.get(cls.kind, args.name)]
    else:
        found = model.of_kind(cls.kind)
    if args.output in ("yaml", "json"):
        doc = found[0].to_dict() if args.name is not None else list_dict(cls.kind, found, model.revision)
        if args.output == "json":
            print(json.dumps(doc, indent=2, sort_keys=True))
        else:
            sys.stdout.write(yaml.safe_dump(doc, sort_keys=True, default_flow_style=False))
        return EXIT_OK
    columns = TABLES[cls][1 if args.output == "wide" else 0]
    print_table([c[0] for c in columns], [[fn(r, model) for _, fn in columns] for r in found])
    return EXIT_OK


def _read_resources(filename: str) -> list[Resource]:
    if filename == "-":
        source = "<stdin>"
        raw = getattr(sys.stdin, "buffer", None)  # a text stream without bytes underneath: already text
        text = decode_text(raw.read(), source) if raw is not None else sys.stdin.read()
    else:
        try:
            with open(filename, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise CtlError(f"cannot read {filename}: {exc.strerror}") from None
        source = filename
        text = decode_text(data, source)
    loaded = load_resources(text, source)
    print_warnings(loaded.warnings)
    if not loaded.resources:
        raise CtlError(f"no resources in {source}")
    return list(loaded.resources)


def _summary(verb: str, resources: Sequence[Resource]) -> str:
    kinds = Counter(r.kind for r in resources)
    if len(kinds) == 1:
        kind, count = kinds.popitem()
        return f"Successfully {verb} {count} '{kind}' resource(s)"
    return f"Successfully {verb} {len(resources)} resource(s)"


def cmd_apply(args: argparse.Namespace) -> int:
    resources = _read_resources(args.filename)
    open_store(args).apply(resources)
    print(_summary("applied", resources))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    if args.filename is not None:
        if args.kind is not None:
            raise UsageError("give either -f FILE or KIND NAME, not both")
        resources = _read_resources(args.filename)
        keys = [r.key for r in resources]
    else:
        if args.kind is None or args.name is None:
            raise UsageError("delete needs -f FILE or KIND NAME")
        cls = resolve_kind(args.kind)
        keys = [(cls.kind, args.name)]
        resources = []
    store = open_store(args)
    before = store.load(missing_ok=True)
    store.delete(keys, missing_ok=args.skip_not_exists)
    deleted = [before.get(k, n) for k, n in keys if (k, n) in {r.key for r in before.resources}]
    print(_summary("deleted", deleted or resources))
    return EXIT_OK
