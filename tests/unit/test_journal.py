"""Native journal entries: the fields journald would store, read back from a socket standing in for it."""

from __future__ import annotations

import io
import logging
import socket
from pathlib import Path

from runtime.journal import JournalHandler, decode_entry, encode_entry


def test_entry_encoding_round_trips_multiline_values() -> None:
    fields = [("MESSAGE", "line one\nline two"), ("PRIORITY", "4"), ("PEER", "10.30.0.56")]
    data = encode_entry(fields)
    assert b"PRIORITY=4\n" in data and b"MESSAGE\n" in data  # the binary form only where needed
    assert decode_entry(data) == dict(fields)


def test_records_carry_priority_and_the_peer(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(path)
        journal.settimeout(5)
        handler = JournalHandler("tortie-bgpd", address=path)
        log = logging.getLogger("tortie.bgp.test")
        log.addHandler(handler)
        log.propagate = False
        try:
            log.warning("peer %s down: %s", "10.30.0.56", "hold timer expired", extra={"peer": "10.30.0.56"})
            entry = decode_entry(journal.recv(65536))
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                log.exception("kernel programming failed")
            failed = decode_entry(journal.recv(65536))
        finally:
            log.removeHandler(handler)
            handler.close()
    assert entry["MESSAGE"] == "peer 10.30.0.56 down: hold timer expired"
    assert entry["PRIORITY"] == "4" and entry["PEER"] == "10.30.0.56"
    assert entry["SYSLOG_IDENTIFIER"] == "tortie-bgpd" and entry["TORTIE_LOGGER"] == "tortie.bgp.test"
    assert entry["CODE_FUNC"] == "test_records_carry_priority_and_the_peer"
    assert failed["PRIORITY"] == "3" and "RuntimeError: boom" in failed["MESSAGE"] and "PEER" not in failed


def test_no_journal_falls_back_to_priority_lines(tmp_path: Path) -> None:
    buf = io.StringIO()
    handler = JournalHandler("tortie-felixd", address=str(tmp_path / "missing.sock"), fallback=buf)
    record = logging.LogRecord("tortie.felix", logging.ERROR, __file__, 1, "route %s failed", ("x",), None)
    handler.emit(record)
    handler.close()
    assert buf.getvalue() == "<3>tortie.felix: route x failed\n"
