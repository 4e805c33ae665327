"""tortiectl lab: the Calico routing article's cluster in network namespaces on this machine."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ctl.common import EXIT_OK, CtlError, UsageError, print_table
from lab.chaos import ETCD_KINDS, HOST_KINDS, KINDS, Chaos, EventResult, new_run
from lab.cluster import Lab
from lab.topology import REPO, SEED_CLUSTER, STATE_DIR, LabState

CHAOS_CLUSTER = REPO / "configs" / "chaos-cluster.yaml"


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
    ch = verbs.add_parser("chaos", help="faults one at a time under pod-to-pod traffic: probes lost, time to whole")
    ch.add_argument("--up", action="store_true",
                    help="bring up a fresh lab first (from --cluster, on --datastore) and take it down after")
    ch.add_argument("--keep", action="store_true", help="with --up: leave the lab up afterwards")
    ch.add_argument("--cluster", type=Path, default=CHAOS_CLUSTER, metavar="FILE",
                    help="with --up: the cluster file (default configs/chaos-cluster.yaml)")
    ch.add_argument("--datastore", choices=["file", "etcd"], default="file", help="with --up")
    ch.add_argument("--prefix", default="tl-", help="with --up: the namespaces' name prefix (default tl-)")
    ch.add_argument("--hosts", default="", metavar="H1,H2", help="hosts to hit (default: every host)")
    ch.add_argument("--events", default="", metavar="KIND,...",
                    help="event kinds, in order (default: every kind the lab supports): " + ", ".join(KINDS))
    ch.add_argument("--rate", type=float, default=25.0, help="probes a second per pair of pods (default 25)")
    ch.add_argument("--json", type=Path, metavar="FILE",
                    help="write the results (scripts/chaos_table.py renders them)")
    ch.set_defaults(handler=cmd_chaos)


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


def cmd_chaos(args: argparse.Namespace) -> int:
    _root()
    import json

    kinds = [k for k in args.events.split(",") if k] or list(KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise UsageError(f"unknown event kinds {', '.join(unknown)}; have: {', '.join(KINDS)}")
    lab = Lab(Path(args.lab_dir), prefix=args.prefix) if args.up else _lab(args)
    if args.up:
        lab.up(args.cluster, datastore=args.datastore)
        print(f"lab up from {args.cluster} on the {args.datastore} datastore; state in {lab.dir}", flush=True)
    chaos: Chaos | None = None
    failed = False
    try:
        try:
            chaos = Chaos(lab, rate=args.rate, log=lambda line: print(line, flush=True))
        except RuntimeError as exc:
            raise CtlError(str(exc)) from None
        hosts = [h for h in args.hosts.split(",") if h] or chaos.hosts
        missing = [h for h in hosts if h not in chaos.hosts]
        if missing:
            raise UsageError(f"no host {', '.join(missing)}; have: {', '.join(chaos.hosts)}")
        try:
            took = chaos.start()
        except (RuntimeError, TimeoutError) as exc:
            raise CtlError(f"the lab is not ready for chaos: {exc}") from None
        print(f"probing {len(chaos.matrix.pairs)} pairs of pods at {args.rate:g}/s each; whole after {took:.1f} s",
              flush=True)
        plan: list[tuple[str, str]] = []
        for h in hosts:
            plan += [(k, h) for k in kinds if k in HOST_KINDS and (k != "rogue-peer" or chaos.rogue is not None)
                     and (k != "bad-config" or not chaos.on_etcd)]
        if any(k in ETCD_KINDS for k in kinds):
            if lab.etcd is None:
                print("etcd events skipped: they need a lab on etcd started by this command (--up --datastore etcd)")
            else:
                plan += [("etcd-kill", m) for m in chaos.etcd_members() if "etcd-kill" in kinds]
                plan += [("etcd-all", "all")] if "etcd-all" in kinds else []
        run = new_run(lab, chaos, "tortiectl lab chaos " + " ".join(sys.argv[3:]))
        for kind, target in plan:
            print(f"-> {kind} on {target}", flush=True)
            try:
                result = chaos.run(kind, target)
            except (RuntimeError, TimeoutError) as exc:
                result = EventResult(kind, target, -1, {}, 0, None, 0.0, "", False, f"error: {exc}")
                print(f"   {kind} on {target} failed: {exc}", flush=True)
            run.events.append(result)
            failed = failed or not result.met
        sent, answered, lost = chaos.matrix.totals()
        print(f"\n{len(run.events)} events; {sent} probes sent, {answered} answered, {lost} lost in all; "
              f"goals missed: {', '.join(f'{e.kind} on {e.target}' for e in run.events if not e.met) or 'none'}")
        if args.json:
            args.json.write_text(json.dumps({"every_host": not args.hosts, "runs": [run.to_json()]}, indent=1))
            print(f"results in {args.json} (scripts/chaos_table.py {args.json} docs/reliability.md renders them)")
    finally:
        if chaos is not None:
            chaos.stop()
        if args.up and not args.keep:
            lab.down()
    return 1 if failed else EXIT_OK
