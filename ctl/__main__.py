"""tortiectl: the operator's CLI.

Each verb group lives in its own module listed in COMMAND_MODULES; the module's
`register(subparsers, common)` adds its subcommands (passing `parents=[common]`) and sets
`handler=<function(args) -> exit code>` on each. Adding `node status`, `routes`, `bgp rib` or `lab`
means writing `ctl/<group>_cmd.py` and adding one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ctl.common import EXIT_ERROR, EXIT_USAGE, CtlError, common_options, default_config
from proto.resources import NotFoundError, ValidationError

COMMAND_MODULES: tuple[str, ...] = (
    "ctl.resources_cmd",  # get, apply, delete
    "ctl.ipam_cmd",  # ipam assign-block, ipam show
    "ctl.node_cmd",  # node status
    "ctl.bgp_cmd",  # bgp neighbors, bgp rib
    "ctl.routes_cmd",  # routes
    "ctl.lab_cmd",  # lab up, status, exec, srcdst, down
    "ctl.datastore_cmd",  # datastore migrate export, datastore migrate import
)


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="tortiectl", description="Operate a tortie cluster.")
    parser.add_argument("-c", "--config", default=default_config(), metavar="FILE",
                        help="cluster file, or a CalicoAPIConfig file for etcd (default: $TORTIE_CONFIG or "
                             "/etc/tortie/cluster.yaml; DATASTORE_TYPE / ETCD_* select etcd too)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:  # a command module registered a parser without a handler
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except CtlError as exc:
        print(f"tortiectl: {exc}", file=sys.stderr)
        return exc.code
    except ValidationError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_ERROR
    except NotFoundError as exc:
        print(f"tortiectl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"tortiectl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
