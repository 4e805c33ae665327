"""Log set-up: readable lines on stderr, the journal's native protocol (structured fields) under
systemd, JSON for shippers."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from runtime.journal import JournalHandler, priority


class JournalFormatter(logging.Formatter):
    """No timestamp (the journal adds one) and a priority prefix so levels survive: the stream form,
    when the journal's own socket is not there."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{priority(record.levelno)}>{record.name}: {super().format(record)}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("peer", "prefix", "node", "op"):
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup(level: str = "info", fmt: str = "auto", stream: object = None, identifier: str | None = None) -> None:
    """`fmt`: auto (journal when JOURNAL_STREAM is set, else text), text, journal or json. The journal
    format sends native journal entries (structured fields) when journald's socket is there and no
    `stream` is given, else `<priority>` lines on the stream."""
    if fmt == "auto":
        fmt = "journal" if os.environ.get("JOURNAL_STREAM") else "text"
    handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    if fmt == "journal" and stream is None and JournalHandler.available():
        handler = JournalHandler(identifier or os.path.basename(sys.argv[0]) or "tortie")
    elif fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif fmt == "journal":
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        formatter = logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s",
                                      "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    # pyroute2 logs every netlink message at debug: far too much even when we debug
    logging.getLogger("pyroute2").setLevel(max(logging.INFO, root.level))


def parse_level(level: str) -> int:
    """Accepts Python names and Calico's logSeverityScreen values (Debug, Info, Warning, Error, Fatal)."""
    name = level.strip().upper()
    name = {"FATAL": "CRITICAL", "WARN": "WARNING", "PANIC": "CRITICAL"}.get(name, name)
    value = logging.getLevelName(name)
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value
