"""The fuzz targets, one module each. A target module defines:

    NAME        the target's name (`make fuzz FUZZ_TARGETS=NAME`)
    MAX_LEN     the largest input libFuzzer generates
    COVERS      the source paths it exercises (for the line coverage a campaign reports)
    DICTIONARY  (optional) tokens for libFuzzer's dictionary
    seeds()     seed inputs (from the captured sessions in tests/data where there is wire traffic)
    check(data) runs one input; returns for every documented outcome, raises anything else

To add a target (the BFD decoder of issue 16 is the next one): write `fuzz/targets/bfd.py` with the
names above, its oracle being "a decoded control packet or the decoder's documented error, and
decode-encode-decode stable", seed it from real BFD packets (a capture of BIRD's BFD in
tests/data), and add it to TARGETS below. `make test` then runs it briefly, `make fuzz` at length.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TARGETS: dict[str, str] = {
    "bgp-message": "fuzz.targets.bgp_message",
    "bgp-session": "fuzz.targets.bgp_session",
    "feed": "fuzz.targets.feed",
    "cluster-file": "fuzz.targets.cluster_file",
    "selector": "fuzz.targets.selector",
    # "bfd": "fuzz.targets.bfd",  -- issue 16: the BFD decoder, once it exists (see above)
}


def load(name: str) -> ModuleType:
    if name not in TARGETS:
        raise KeyError(f"no fuzz target {name!r} (have: {', '.join(TARGETS)})")
    return importlib.import_module(TARGETS[name])
