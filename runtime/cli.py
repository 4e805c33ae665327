"""Command-line options both daemons share."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable

EXIT_CONFIG = 78  # sysexits.h EX_CONFIG: the units' RestartPreventExitStatus names it
EXIT_NOPERM = 77  # sysexits.h EX_NOPERM: a privilege the daemon needs is missing; retrying cannot help


def default_run_dir() -> str:
    return os.environ.get("TORTIE_RUN_DIR", "/run/tortie")


class _Help(argparse.HelpFormatter):
    """argparse's formatter, sized without `shutil`: argparse builds one for every option it adds, and
    the default one imports shutil (and with it bz2, lzma, fnmatch), half a megabyte per daemon that
    only `--help` would use."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                width = int(os.environ.get("COLUMNS", "")) - 2
            except ValueError:
                try:
                    width = os.get_terminal_size(sys.stdout.fileno()).columns - 2
                except (OSError, ValueError):
                    width = 78
        super().__init__(prog, indent_increment, max_help_position, width)


def daemon_parser(prog: str, description: str, metrics_port: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_Help)
    p.add_argument("--config", default=os.environ.get("TORTIE_CONFIG", "/etc/tortie/cluster.yaml"),
                   help="cluster datastore file (default /etc/tortie/cluster.yaml)")
    p.add_argument("--node", default=socket.gethostname(),
                   help="this host's Node name in the cluster file (default: the host name)")
    p.add_argument("--run-dir", default=default_run_dir(),
                   help="where the control and feed sockets live (default /run/tortie)")
    p.add_argument("--log-level", default=None,
                   help="debug, info, warning, error (default: the BGPConfiguration's logSeverityScreen)")
    p.add_argument("--log-format", default="auto", choices=["auto", "text", "journal", "json"],
                   help="auto: journal format under systemd, text otherwise")
    p.add_argument("--metrics-address", default=None,
                   help="management address for /metrics, /readiness, /liveness (default 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help=f"management port (default {metrics_port}; 0 picks a free one)")
    p.add_argument("--check-config", action="store_true",
                   help=f"validate the configuration for this node and exit (0: valid, {EXIT_CONFIG}: not)")
    return p


def check_config(args: argparse.Namespace, validate: Callable[[object], object]) -> int:
    """`--check-config`: load the cluster file, run `validate(model)` (the daemon's own start-up checks
    for this node) and say what is wrong, file, line and field, as the daemon would at start."""
    from datastore import open_datastore

    try:
        validate(open_datastore(args.config).load())
    except (ValueError, LookupError, OSError) as exc:
        for line in str(exc).splitlines():
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.config}: valid for node {args.node}")
    return 0


def config_failed(log: logging.Logger, exc: BaseException, notifier: object | None = None) -> int:
    """A daemon cannot start on this configuration: every problem to the log, the first as the unit's
    status line (`systemctl status` shows it), and the exit code that tells systemd not to retry."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    for line in lines:
        log.error("%s", line)
    status = getattr(notifier, "status", None)
    if status is not None:
        status(f"invalid configuration: {lines[0]}")
    return EXIT_CONFIG
