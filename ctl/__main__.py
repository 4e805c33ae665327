"""tortiectl: the operator's CLI.

Each verb group lives in its own module listed in COMMAND_MODULES with the commands it registers;
the module's `register(subparsers, common)` adds its subcommands (passing `parents=[common]`) and sets
`handler=<function(args) -> exit code>` on each. Adding `node status`, `routes`, `bgp rib` or `lab`
means writing `ctl/<group>_cmd.py` and adding one line here.

Only the module of the command given is imported (all of them for help or a usage error): `lab`
brings the namespace lab and its chaos runner, which `apply` has no use for, and every tortiectl
invocation pays for what it imports (tests/unit/test_ctl.py keeps the table true).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ctl.common import EXIT_ERROR, EXIT_USAGE, CtlError, common_options, default_config
from proto.resources import NotFoundError, ValidationError

COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "ctl.resources_cmd": ("get", "apply", "delete"),
    "ctl.ipam_cmd": ("ipam",),  # ipam assign-block, release, show
    "ctl.node_cmd": ("node",),  # node status, drain
    "ctl.bgp_cmd": ("bgp",),  # bgp neighbors, rib, refresh, shutdown, enable, graceful-stop
    "ctl.routes_cmd": ("routes",),
    "ctl.lab_cmd": ("lab",),  # lab up, status, exec, srcdst, chaos, down
    "ctl.datastore_cmd": ("datastore",),  # datastore migrate export, datastore migrate import
}
_TOP_OPTIONS_WITH_VALUE = ("-c", "--config")


def command_word(argv: Sequence[str]) -> str | None:
    """The command named on the line (`apply` in `tortiectl -c f apply -f x`); None for help or when
    an option comes first that only the whole parser can explain."""
    tokens = iter(argv)
    for token in tokens:
        if token in _TOP_OPTIONS_WITH_VALUE:
            next(tokens, None)
        elif token.startswith("--config=") or (token.startswith("-c") and not token.startswith("--")):
            continue
        elif token.startswith("-"):
            return None
        else:
            return token
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (given a command some module registers) the parser of that command alone."""
    modules = [name for name, commands in COMMAND_MODULES.items() if command in commands] or list(COMMAND_MODULES)
    common = common_options()
    parser = argparse.ArgumentParser(prog="tortiectl", description="Operate a tortie cluster.")
    parser.add_argument("-c", "--config", default=default_config(), metavar="FILE",
                        help="cluster file, or a CalicoAPIConfig file for etcd (default: $TORTIE_CONFIG or "
                             "/etc/tortie/cluster.yaml; DATASTORE_TYPE / ETCD_* select etcd too)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(command_word(sys.argv[1:] if argv is None else argv))
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
