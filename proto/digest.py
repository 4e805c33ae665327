"""SHA-1 and SHA-256 without OpenSSL.

`hashlib` loads `_hashlib`, which maps OpenSSL's libcrypto: about 3.4 MB resident in every daemon
that imports it, for the few short digests tortie takes (Calico's VTEP MAC and interface names, the
file datastore's change check). CPython's own implementations (`_sha1`, `_sha256` in 3.11, `_sha2`
from 3.12) give the same digests without it; hashlib is the fallback where they are missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _pick(names: tuple[tuple[str, str], ...]) -> Callable[[bytes], Any]:
    for module, attr in names:
        try:
            return getattr(__import__(module), attr)  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    import hashlib

    return getattr(hashlib, names[0][1])  # type: ignore[no-any-return]


_SHA1 = _pick((("_sha1", "sha1"),))
_SHA256 = _pick((("_sha2", "sha256"), ("_sha256", "sha256")))


def sha1(data: bytes) -> bytes:
    return bytes(_SHA1(data).digest())


def sha1_hex(data: bytes) -> str:
    return str(_SHA1(data).hexdigest())


def sha256(data: bytes) -> bytes:
    return bytes(_SHA256(data).digest())
