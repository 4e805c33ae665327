"""What every tortiectl subcommand shares: the `--config` option, errors and exit codes, output."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from datastore import DEFAULT_PATH, Datastore, open_datastore
from proto.resources import Problem

EXIT_OK = 0
EXIT_ERROR = 1  # validation error, resource not found, datastore unusable
EXIT_USAGE = 2  # the command line itself is wrong (argparse uses 2 too)

Handler = Callable[[argparse.Namespace], int]


class CtlError(Exception):
    """An error to print on stderr and exit with `code`."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CtlError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def default_config() -> str:
    return os.environ.get("TORTIE_CONFIG", str(DEFAULT_PATH))


def common_options() -> argparse.ArgumentParser:
    """A parent parser for every subcommand, so `--config` works before or after the verb."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="FILE",
                        help=f"cluster datastore file (default: $TORTIE_CONFIG or {DEFAULT_PATH})")
    return parent


def open_store(args: argparse.Namespace) -> Datastore:
    return open_datastore(args.config)


def print_warnings(warnings: Sequence[Problem], stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    for warning in warnings:
        print(f"WARNING: {warning}", file=stream)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], stream: TextIO | None = None) -> None:
    """Left-aligned columns, like calicoctl's default output."""
    stream = stream or sys.stdout
    cells = [list(headers)] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=stream)
