"""Log records to systemd-journald's native protocol, with structured fields.

journald reads datagrams on /run/systemd/journal/socket, one entry each: `FIELD=value` lines, and a
value holding a newline as `FIELD`, newline, its length (64-bit little endian), the bytes, newline.
Every entry carries MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_FILE / CODE_LINE / CODE_FUNC and
TORTIE_LOGGER, plus the record's structured extras (`extra={"peer": ...}`) as PEER, PREFIX, NODE and
OP, so `journalctl -u tortie-bgpd -p warning PEER=10.30.0.56` finds one peer's events.

Sending never blocks the event loop: the socket is non-blocking, and an entry the journal cannot take
right now goes to the fallback stream (stderr, which systemd also hands to the journal).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import traceback
from typing import TextIO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
EXTRA_FIELDS = ("peer", "prefix", "node", "op")  # record attributes that become journal fields
MAX_MESSAGE = 48 * 1024

# syslog priorities (sd-daemon(3), journald's PRIORITY field)
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return PRIORITY[level]
    return PRIORITY[logging.DEBUG]


def encode_entry(fields: list[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in fields:
        raw = value.encode("utf-8", errors="replace")
        if b"\n" in raw:
            out += name.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
        else:
            out += name.encode() + b"=" + raw + b"\n"
    return bytes(out)


def decode_entry(data: bytes) -> dict[str, str]:
    """The inverse of `encode_entry` (for tests: what journald would store)."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            fields[name.decode()] = value.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            fields[line.decode()] = data[nl + 9:nl + 9 + size].decode()
            i = nl + 9 + size + 1
    return fields


class JournalHandler(logging.Handler):
    def __init__(self, identifier: str, address: str = JOURNAL_SOCKET, fallback: TextIO | None = None) -> None:
        super().__init__()
        self.identifier = identifier
        self.address = address
        self.fallback = fallback or sys.stderr
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @staticmethod
    def available(address: str = JOURNAL_SOCKET) -> bool:
        return os.path.exists(address)

    def fields(self, record: logging.LogRecord) -> list[tuple[str, str]]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " [truncated]"
        out = [("MESSAGE", message), ("PRIORITY", str(priority(record.levelno))),
               ("SYSLOG_IDENTIFIER", self.identifier), ("TORTIE_LOGGER", record.name),
               ("CODE_FILE", record.pathname), ("CODE_LINE", str(record.lineno))]
        if record.funcName:
            out.append(("CODE_FUNC", record.funcName))
        for key in EXTRA_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out.append((key.upper(), str(value)))
        return out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = encode_entry(self.fields(record))
            try:
                self.sock.sendto(data, self.address)
                return
            except OSError:
                pass  # journal gone or busy: the stream still reaches it
            prio = priority(record.levelno)
            self.fallback.write(f"<{prio}>{record.name}: {record.getMessage()}\n")
            self.fallback.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()
