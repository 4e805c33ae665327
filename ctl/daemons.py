"""Talking to the running daemons: `--run-dir`, control calls with operator-friendly errors, output.

Shared by `tortiectl node status`, `bgp neighbors`, `bgp rib` and `routes`. Every daemon listens on
`<run-dir>/<daemon>.sock` (see runtime/control.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import time
from datetime import datetime
from typing import Any

from ctl.common import CtlError
from proto.record import record
from runtime.cli import default_run_dir
from runtime.control import ControlError, call

BGPD = "bgpd"
FELIXD = "felixd"


def now() -> float:
    """The wall clock, as a seam so tests can pin 'today'."""
    return time.time()


def run_dir_options() -> argparse.ArgumentParser:
    """A parent parser: `--run-dir` before or after the verb (SUPPRESS so a leaf does not reset it)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--run-dir", default=argparse.SUPPRESS, metavar="DIR",
                        help="where the daemons' control sockets live (default: $TORTIE_RUN_DIR or /run/tortie)")
    return parent


def add_output_option(parser: argparse.ArgumentParser, choices: tuple[str, ...] = ("table", "json")) -> None:
    parser.add_argument("-o", "--output", choices=choices, default=choices[0],
                        help=f"output format: {', '.join(choices)} (default {choices[0]}); json is the daemon's "
                             "raw answer, for scripts")


def socket_path(args: argparse.Namespace, daemon: str) -> str:
    run_dir = getattr(args, "run_dir", None) or default_run_dir()
    return os.path.join(run_dir, f"{daemon}.sock")


@record(frozen=True)
class Reach:
    """Whether a daemon answered, and why not when it did not."""

    daemon: str
    socket: str
    running: bool
    reason: str = ""  # why it did not answer, naming the socket
    verdict: str = "not running"  # or "not reachable": the socket is there but refuses us (permissions)

    @property
    def line(self) -> str:
        if self.running:
            return f"tortie-{self.daemon} is running."
        return f"tortie-{self.daemon} is {self.verdict} ({self.reason})."


def unreached(daemon: str, path: str, exc: ControlError) -> Reach | None:
    """Why the daemon did not answer, or None when it did answer (with an error of its own)."""
    if isinstance(exc.__cause__, PermissionError):  # the run directory or socket is not ours to use
        return Reach(daemon, path, False, str(exc), "not reachable")
    if not os.path.exists(path):
        return Reach(daemon, path, False, f"no socket at {path}")
    if isinstance(exc.__cause__, ConnectionRefusedError):  # the socket file of a daemon that died
        return Reach(daemon, path, False, str(exc))
    # runtime.control prefixes socket-level failures with the path ("...: Permission denied", "...: timed
    # out"); errors the daemon itself returns (unknown peer, bad prefix) do not carry it.
    if isinstance(exc.__cause__, OSError) or str(exc).startswith(f"{path}:"):
        return Reach(daemon, path, False, str(exc), "not reachable")
    return None


def _call(path: str, method: str, params: dict[str, Any]) -> Any:
    try:
        return call(path, method, **params)
    except ValueError:  # not JSON: something else listens on the socket
        raise ControlError(f"{path}: the answer is not the control protocol") from None


def ask(args: argparse.Namespace, daemon: str, method: str, **params: Any) -> Any:
    """One control call; any failure becomes a CtlError (exit 1) saying which daemon and socket.

    Parameters left at None are not sent, so the daemon's own defaults apply.
    """
    path = socket_path(args, daemon)
    try:
        return _call(path, method, {k: v for k, v in params.items() if v is not None})
    except ControlError as exc:
        reach = unreached(daemon, path, exc)
        raise CtlError(reach.line if reach else f"tortie-{daemon}: {exc}") from None


def probe(args: argparse.Namespace, daemon: str, method: str) -> tuple[Reach, Any]:
    """Like `ask`, but a daemon that does not answer is a result, not an error (for `node status`)."""
    path = socket_path(args, daemon)
    try:
        return Reach(daemon, path, True), _call(path, method, {})
    except ControlError as exc:
        reach = unreached(daemon, path, exc)
        if reach is None:
            raise CtlError(f"tortie-{daemon}: {exc}") from None
        return reach, None


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def format_since(epoch: float | None, at: float | None = None) -> str:
    """calicoctl's SINCE: the local time of day when it was today, else the date."""
    if not epoch:
        return "-"
    when = datetime.fromtimestamp(epoch)
    today = datetime.fromtimestamp(now() if at is None else at).date()
    return when.strftime("%H:%M:%S") if when.date() == today else when.strftime("%Y-%m-%d")


def format_duration(seconds: float | None) -> str:
    """BIRD-like: 1d02h03m04s, 02h03m04s, 03m04s, 4s."""
    if seconds is None:
        return "-"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m{secs:02d}s"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def address_key(address: str) -> tuple[int, int, str]:
    """Numeric address order (10.30.0.56 before 10.30.0.206); anything unparsable sorts last by text."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return (9, 0, address)
    return (ip.version, int(ip), address)


def prefix_key(prefix: str) -> tuple[int, int, int, str]:
    try:
        net = ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return (9, 0, 0, prefix)
    return (net.version, int(net.network_address), net.prefixlen, prefix)
