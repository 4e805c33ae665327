"""tortiectl lab: the Calico routing article's cluster in network namespaces on this machine."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ctl.common import EXIT_OK, CtlError, UsageError, print_table
from lab.cluster import Lab
from lab.topology import SEED_CLUSTER, STATE_DIR, LabState


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    lab = subparsers.add_parser("lab", parents=[common], help="the article's cluster in network namespaces")
    lab.add_argument("--lab-dir", default=os.environ.get("TORTIE_LAB_DIR", str(STATE_DIR)),
                     help=f"where the lab keeps its state (default {STATE_DIR})")
    verbs = lab.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)
    up = verbs.add_parser("up", help="build the lab and start tortie on every host")
    up.add_argument("--scenario", default="seed", choices=["seed"])
    up.add_argument("--no-daemons", action="store_true", help="only the namespaces, pods and fabric")
    up.add_argument("--datastore", choices=["file", "etcd"], default="file",
                    help="file: the cluster file (default); etcd: a three-member etcd inside the lab")
    up.add_argument("--cluster", type=Path, default=SEED_CLUSTER, metavar="FILE",
                    help="cluster file to run (default configs/seed-cluster.yaml)")
    up.set_defaults(handler=cmd_up)
    verbs.add_parser("status", help="namespaces and processes of the lab").set_defaults(handler=cmd_status)
    verbs.add_parser("down", help="stop everything and remove the namespaces").set_defaults(handler=cmd_down)
    ex = verbs.add_parser("exec", help="run a command on a host or in a pod: lab exec worker-1 -- ip route")
    ex.add_argument("target")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    ex.set_defaults(handler=cmd_exec)
    sd = verbs.add_parser("srcdst", help="the cloud source/destination check on subnet 1")
    sd.add_argument("state", choices=["on", "off"])
    sd.set_defaults(handler=cmd_srcdst)


def _root() -> None:
    if os.geteuid() != 0:
        raise CtlError("tortiectl lab needs root: it creates network namespaces")


def _lab(args: argparse.Namespace) -> Lab:
    return Lab(Path(args.lab_dir))


def cmd_up(args: argparse.Namespace) -> int:
    _root()
    lab = _lab(args)
    topo = lab.up(args.cluster, daemons=not args.no_daemons, datastore=args.datastore)
    print(f"lab up: {len(topo.scenario.hosts)} hosts, {len(topo.scenario.pods)} pods; state in {lab.dir}")
    if args.datastore == "etcd":
        print(f"datastore: etcd v3, three members on their own subnet ({lab.datastore_config})")
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    _root()
    removed = _lab(args).down()
    print(f"lab down: removed {len(removed)} namespaces" if removed else "no lab was up")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    state = LabState.load(Path(args.lab_dir))
    if state is None:
        print("no lab is up")
        return 1
    rows = []
    for label, pid in sorted(state.pids.items()):
        alive = os.path.exists(f"/proc/{pid}")
        rows.append([label, pid, "running" if alive else "exited"])
    print_table(["NAMESPACE ROLE", "NAMESPACE"], sorted(state.namespaces.items()))
    print()
    print_table(["PROCESS", "PID", "STATE"], rows)
    print(f"\nsource/destination check on subnet 1: {'on' if state.srcdst else 'off'}")
    return EXIT_OK


def cmd_exec(args: argparse.Namespace) -> int:
    _root()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("lab exec TARGET -- COMMAND [ARGS...]")
    try:
        proc = _lab(args).exec(args.target, argv, capture=False, timeout=3600)
    except (KeyError, RuntimeError) as exc:
        raise CtlError(str(exc)) from None
    return proc.returncode


def cmd_srcdst(args: argparse.Namespace) -> int:
    _root()
    try:
        _lab(args).srcdst(args.state == "on")
    except RuntimeError as exc:
        raise CtlError(str(exc)) from None
    print(f"source/destination check {args.state}", file=sys.stderr)
    return EXIT_OK
