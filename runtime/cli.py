"""Command-line options both daemons share."""

from __future__ import annotations

import argparse
import os
import socket


def default_run_dir() -> str:
    return os.environ.get("TORTIE_RUN_DIR", "/run/tortie")


def daemon_parser(prog: str, description: str, metrics_port: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
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
    return p
