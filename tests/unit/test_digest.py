"""proto.digest gives hashlib's digests without loading OpenSSL, and a daemon's imports leave
OpenSSL's libcrypto, ctypes.util's helpers and the compressors out (issue 12)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from proto.digest import sha1, sha1_hex, sha256


@given(st.binary(max_size=300))
def test_the_digests_are_hashlibs(data: bytes) -> None:
    assert sha1(data) == hashlib.sha1(data).digest()
    assert sha1_hex(data) == hashlib.sha1(data).hexdigest()
    assert sha256(data) == hashlib.sha256(data).digest()


def test_bgpd_loads_no_libcrypto_nor_compressors() -> None:
    code = ("import sys; from runtime.lean import without_tls; without_tls(); import bgpd.__main__, bgpd.daemon; "
            "import datastore.filestore, datastore.watch; "
            "print(sorted(m for m in ('_hashlib', 'ssl', 'bz2', 'lzma', 'tempfile', 'shutil', 'ctypes.util') "
            "if sys.modules.get(m) is not None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
