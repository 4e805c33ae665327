"""tortie's own settings, carried as annotations on Calico resources so the YAML stays valid Calico
(calicoctl and Calico's datastores keep annotations and ignore them).

    bfd.tortie.io/enabled: "true"          BFD (RFC 5880/5881) on the sessions of this BGPPeer, or, on
    bfd.tortie.io/min-rx-ms: "300"         the default BGPConfiguration, on the node-to-node mesh
    bfd.tortie.io/min-tx-ms: "300"         (defaults 300 ms and 3: the usual practice)
    bfd.tortie.io/multiplier: "3"
    bfd.tortie.io/auth: keyed-sha1         none, simple, keyed-md5, meticulous-keyed-md5, keyed-sha1,
    bfd.tortie.io/auth-key-id: "1"         meticulous-keyed-sha1; the key (or password) is read from
    bfd.tortie.io/auth-key-file: /etc/...  a file, one trailing newline dropped
    policy.tortie.io/block-ownership: strict   on the default BGPConfiguration: strict (the default)
                                               or off (see bgpd/ownership.py)

`problems` checks a resource's annotations: every key under a `tortie.io` prefix must be one of these,
on a kind that takes it, with a valid value; each problem names the key (the resource loader turns
it into file, line and field). The rest of the module reads the values of annotations that passed.
`proto.resources` calls `problems` at one point; `bgpd.topology` and `bgpd.ownership` read the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

from proto.record import record

BFD_PREFIX = "bfd.tortie.io/"
POLICY_PREFIX = "policy.tortie.io/"
TORTIE_DOMAIN = "tortie.io"

ENABLED, MIN_RX, MIN_TX, MULTIPLIER = (f"{BFD_PREFIX}{k}" for k in ("enabled", "min-rx-ms", "min-tx-ms",
                                                                      "multiplier"))
AUTH, AUTH_KEY_ID, AUTH_KEY_FILE = (f"{BFD_PREFIX}{k}" for k in ("auth", "auth-key-id", "auth-key-file"))
BLOCK_OWNERSHIP = f"{POLICY_PREFIX}block-ownership"

DEFAULT_INTERVAL_MS = 300
DEFAULT_MULTIPLIER = 3
INTERVAL_RANGE_MS = (10, 60_000)  # FRR's range; BIRD's is wider
MULTIPLIER_RANGE = (1, 255)

# RFC 5880 authentication types by their annotation value (the numbers of proto.bfd.AuthType)
AUTH_TYPES = {"simple": 1, "keyed-md5": 2, "meticulous-keyed-md5": 3, "keyed-sha1": 4,
              "meticulous-keyed-sha1": 5}
OWNERSHIP_MODES = ("strict", "off")

BFD_KINDS = ("BGPPeer", "BGPConfiguration")
KEYS: dict[str, tuple[str, ...]] = {  # key -> the kinds it may appear on
    ENABLED: BFD_KINDS, MIN_RX: BFD_KINDS, MIN_TX: BFD_KINDS, MULTIPLIER: BFD_KINDS, AUTH: BFD_KINDS,
    AUTH_KEY_ID: BFD_KINDS, AUTH_KEY_FILE: BFD_KINDS, BLOCK_OWNERSHIP: ("BGPConfiguration",),
}


@record(frozen=True, slots=True)
class BfdSettings:
    """BFD for one peering, as configured (intervals in milliseconds)."""

    min_rx_ms: int = DEFAULT_INTERVAL_MS  # bfd.RequiredMinRxInterval
    min_tx_ms: int = DEFAULT_INTERVAL_MS  # bfd.DesiredMinTxInterval while Up
    multiplier: int = DEFAULT_MULTIPLIER  # bfd.DetectMult
    auth_type: int | None = None  # proto.bfd.AuthType value; None: no authentication
    auth_key_id: int = 1
    auth_key_file: str | None = None
    auth_key: bytes = b""  # read from auth_key_file by bgpd.topology when the peering is built
    # set by bgpd.topology: the peer is not on one of this node's subnets, so BFD runs multihop
    # (RFC 5883, UDP 4784) instead of single hop (RFC 5881, UDP 3784, TTL 255 only)
    multihop: bool = False


def _is_tortie(key: str) -> bool:
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return prefix == TORTIE_DOMAIN or prefix.endswith("." + TORTIE_DOMAIN)


def _interval(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number of milliseconds") from None
    lo, hi = INTERVAL_RANGE_MS
    if not lo <= n <= hi:
        raise ValueError(f"{n} ms is outside {lo}-{hi} ms")
    return n


def _multiplier(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    lo, hi = MULTIPLIER_RANGE
    if not lo <= n <= hi:
        raise ValueError(f"{n} is outside {lo}-{hi}")
    return n


def _bool(value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f'{value!r} is not "true" or "false"')


def _auth(value: str) -> int | None:
    if value == "none":
        return None
    if value not in AUTH_TYPES:
        raise ValueError(f"{value!r} is not one of none, {', '.join(AUTH_TYPES)}")
    return AUTH_TYPES[value]


def _key_id(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if not 0 <= n <= 255:
        raise ValueError(f"{n} is outside 0-255")
    return n


def _key_file(value: str) -> str:
    if not PurePosixPath(value).is_absolute():
        raise ValueError(f"{value!r} is not an absolute path")
    return value


def _mode(value: str) -> str:
    if value not in OWNERSHIP_MODES:
        raise ValueError(f"{value!r} is not one of {', '.join(OWNERSHIP_MODES)}")
    return value


_READERS = {ENABLED: _bool, MIN_RX: _interval, MIN_TX: _interval, MULTIPLIER: _multiplier, AUTH: _auth,
            AUTH_KEY_ID: _key_id, AUTH_KEY_FILE: _key_file, BLOCK_OWNERSHIP: _mode}


def problems(kind: str, annotations: Mapping[str, str]) -> list[tuple[str, str]]:
    """(annotation key, what is wrong) for each tortie annotation that is unknown, on the wrong kind,
    or has a bad value, in key order."""
    out: list[tuple[str, str]] = []
    values: dict[str, object] = {}
    for key in sorted(annotations):
        if not _is_tortie(key):
            continue
        if key not in KEYS:
            import difflib  # only for a misspelt key: kept out of every daemon's start

            near = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.7)
            hint = f"; did you mean {near[0]}?" if near else f"; tortie knows {', '.join(KEYS)}"
            out.append((key, "not a tortie annotation" + hint))
            continue
        if kind not in KEYS[key]:
            where = " and ".join(KEYS[key])
            out.append((key, f"applies to {where} only, not {kind}"))
            continue
        value = annotations[key]
        if not isinstance(value, str):
            out.append((key, f"annotation values are strings; quote {value!r}"))
            continue
        try:
            values[key] = _READERS[key](value)
        except ValueError as exc:
            out.append((key, str(exc)))
    bfd_keys = [k for k in values if k.startswith(BFD_PREFIX) and k != ENABLED]
    if bfd_keys and ENABLED not in values and not any(k == ENABLED for k, _ in out):
        out.append((bfd_keys[0], f'BFD settings without {ENABLED}: "true" (or "false" to keep them off)'))
    if values.get(ENABLED) and values.get(AUTH) is not None and AUTH_KEY_FILE not in annotations:
        out.append((AUTH, f"authentication needs its key: {AUTH_KEY_FILE}"))
    if AUTH_KEY_FILE in values and values.get(AUTH) is None and AUTH not in (k for k, _ in out):
        out.append((AUTH_KEY_FILE, f"a key without {AUTH} (one of {', '.join(AUTH_TYPES)})"))
    return out


def bfd_settings(annotations: Mapping[str, str]) -> BfdSettings | None:
    """The BFD settings of annotations that passed `problems`; None when BFD is not enabled."""
    if not _bool(annotations.get(ENABLED, "false")):
        return None
    return BfdSettings(
        min_rx_ms=_interval(annotations.get(MIN_RX, str(DEFAULT_INTERVAL_MS))),
        min_tx_ms=_interval(annotations.get(MIN_TX, str(DEFAULT_INTERVAL_MS))),
        multiplier=_multiplier(annotations.get(MULTIPLIER, str(DEFAULT_MULTIPLIER))),
        auth_type=_auth(annotations.get(AUTH, "none")),
        auth_key_id=_key_id(annotations.get(AUTH_KEY_ID, "1")),
        auth_key_file=annotations.get(AUTH_KEY_FILE),
    )


def block_ownership(annotations: Mapping[str, str]) -> str:
    """The block-ownership mode of the default BGPConfiguration's annotations: strict unless off."""
    return _mode(annotations.get(BLOCK_OWNERSHIP, "strict"))
