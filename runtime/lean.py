"""Keeping a daemon's process small: what it does not use, it does not load.

asyncio imports `ssl` as soon as it is imported, and with it OpenSSL: about 4 MB of resident memory
and some tens of milliseconds per process. A tortie daemon talks TLS only to an etcd with https
endpoints or client certificates, but its etcd client (httpx) imports ssl even for plain http,
so the entry point keeps ssl out only for the file datastore, deciding before importing asyncio.
"""

from __future__ import annotations

import sys


def without_tls() -> None:
    """Make `import ssl` fail in this process (asyncio and the libraries that only may use TLS cope).
    Call it before anything imports asyncio; it does nothing once ssl is loaded."""
    if "ssl" not in sys.modules:
        sys.modules["ssl"] = None  # type: ignore[assignment]


def tls_only_if_needed(config: str) -> None:
    """No OpenSSL unless the datastore `config` selects needs the ssl module (an etcd: its HTTP client
    imports ssl even for plain http); for a daemon's entry point, before asyncio is imported."""
    from datastore.apiconfig import needs_ssl

    if not needs_ssl(config):
        without_tls()
