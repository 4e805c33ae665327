"""BFD Control packets (RFC 5880 section 4) and their authentication digests (section 6.7).

`proto.bfd_spec.BfdControl` is the construct specification (loaded on demand); `decode_spec` and `encode_spec` parse
and build with it.
A speaker handles a few packets per peer and second (100 peers at 300 ms: about 330 each way per
second), and construct's bit fields cost about 200 us a packet here against 13 us for a `struct`
unpack (bench/bfd.py), which alone would spend a few percent of a core: `decode` and `encode` are
hand-written over `struct`, and tests/unit/test_bfd_packet.py keeps them equal to the specification
with Hypothesis (the same packet, or the same refusal, for any input). `decode_spec` runs nowhere in
production; it is the reference.

`decode` applies the checks of RFC 5880 section 6.8.6 that need no session, in its order (version,
length, detect multiplier, multipoint, my discriminator, then a well-formed authentication section)
and raises `BfdPacketError` with a short reason that is used as a metric label. The checks that need
the session (your discriminator, authentication, TTL) are the session table's (`bgpd.bfd_table`).

Authentication (sections 4.2-4.4, 6.7): simple password, keyed MD5 and SHA1 and their meticulous
variants. `encode` signs keyed packets, `digest_ok` checks a received digest; the sequence-number
rules belong to the session (`bgpd.bfd_session`).
"""

from __future__ import annotations

import struct
from enum import IntEnum

from proto.record import record

VERSION = 1
CONTROL_PORT = 3784  # RFC 5881 section 4: single hop
MULTIHOP_PORT = 4784  # RFC 5883 section 5: multihop
SOURCE_PORTS = (49152, 65535)  # RFC 5881 section 4: the source port range
MANDATORY_LEN = 24
MIN_AUTH_LEN = 26  # RFC 5880 6.8.6: the least Length with the A bit set
TTL = 255  # RFC 5881 section 5: sent with TTL / hop limit 255, and only that accepted


class BfdState(IntEnum):
    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


STATE_NAMES = {BfdState.ADMIN_DOWN: "AdminDown", BfdState.DOWN: "Down", BfdState.INIT: "Init",
               BfdState.UP: "Up"}


class Diag(IntEnum):
    NONE = 0
    DETECTION_TIME_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


DIAG_TEXT = {
    Diag.NONE: "no diagnostic",
    Diag.DETECTION_TIME_EXPIRED: "control detection time expired",
    Diag.ECHO_FAILED: "echo function failed",
    Diag.NEIGHBOR_DOWN: "neighbor signaled session down",
    Diag.FORWARDING_RESET: "forwarding plane reset",
    Diag.PATH_DOWN: "path down",
    Diag.CONCATENATED_PATH_DOWN: "concatenated path down",
    Diag.ADMIN_DOWN: "administratively down",
    Diag.REVERSE_CONCATENATED_PATH_DOWN: "reverse concatenated path down",
}


def diag_text(diag: int) -> str:
    try:
        return DIAG_TEXT[Diag(diag)]
    except ValueError:
        return f"diagnostic {diag}"


class AuthType(IntEnum):
    SIMPLE = 1
    KEYED_MD5 = 2
    METICULOUS_KEYED_MD5 = 3
    KEYED_SHA1 = 4
    METICULOUS_KEYED_SHA1 = 5


# what each digest type hashes with, and the digest's size (= the key's padded size); hashlib (and
# OpenSSL's libcrypto under it) is loaded only when a session uses authentication
DIGEST = {
    AuthType.KEYED_MD5: ("md5", 16),
    AuthType.METICULOUS_KEYED_MD5: ("md5", 16),
    AuthType.KEYED_SHA1: ("sha1", 20),
    AuthType.METICULOUS_KEYED_SHA1: ("sha1", 20),
}
METICULOUS = frozenset({AuthType.METICULOUS_KEYED_MD5, AuthType.METICULOUS_KEYED_SHA1})
AUTH_LEN = {AuthType.KEYED_MD5: 24, AuthType.METICULOUS_KEYED_MD5: 24,
            AuthType.KEYED_SHA1: 28, AuthType.METICULOUS_KEYED_SHA1: 28}
MAX_PASSWORD = 16
_DIGEST_OFFSET = MANDATORY_LEN + 8  # type, len, key id, reserved, sequence

# ---------------------------------------------------------------- the decoded form


@record(frozen=True, slots=True)
class Auth:
    auth_type: int
    key_id: int
    password: bytes = b""  # simple password
    sequence: int = 0  # keyed types
    digest: bytes = b""  # keyed types: as received (or, before `sign`, empty)


@record(frozen=True, slots=True)
class ControlPacket:
    state: int
    detect_mult: int
    my_discriminator: int
    your_discriminator: int
    desired_min_tx: int  # microseconds
    required_min_rx: int
    required_min_echo_rx: int = 0
    diag: int = Diag.NONE
    poll: bool = False
    final: bool = False
    cpi: bool = False  # Control Plane Independent: 0 for tortie, whose BFD runs in bgpd
    demand: bool = False
    multipoint: bool = False
    auth: Auth | None = None
    version: int = VERSION


class BfdPacketError(ValueError):
    """A packet RFC 5880 6.8.6 says to discard. `reason` is short, stable and bounded (a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_spec(data: bytes) -> ControlPacket:
    """`decode` by the specification."""
    from construct import ConstructError

    from proto.bfd_spec import AuthSection, BfdMandatory

    if len(data) < MANDATORY_LEN:
        raise BfdPacketError("length", f"{len(data)} octets: shorter than the 24 of a Control packet")
    m = BfdMandatory.parse(data)
    head = m.head
    if head.version != VERSION:
        raise BfdPacketError("version", f"version {head.version}, not 1")
    minimum = MIN_AUTH_LEN if head.auth_present else MANDATORY_LEN
    if m.length < minimum:
        raise BfdPacketError("length", f"Length field {m.length} below the minimum {minimum}")
    if m.length > len(data):
        raise BfdPacketError("length", f"Length field {m.length} beyond the {len(data)} octets received")
    if m.detect_mult == 0:
        raise BfdPacketError("detect-mult", "Detect Mult is zero")
    if head.multipoint:
        raise BfdPacketError("multipoint", "Multipoint (M) bit set")
    if m.my_discriminator == 0:
        raise BfdPacketError("my-discriminator", "My Discriminator is zero")
    auth = None
    if head.auth_present:
        try:
            section = AuthSection.parse(bytes(data[MANDATORY_LEN:m.length]))
        except ConstructError as exc:
            raise BfdPacketError("auth-format", f"authentication section does not fit the packet: {exc}") from None
        auth = _auth(section, m.length)
    return ControlPacket(
        state=head.state, detect_mult=m.detect_mult, my_discriminator=m.my_discriminator,
        your_discriminator=m.your_discriminator, desired_min_tx=m.desired_min_tx,
        required_min_rx=m.required_min_rx, required_min_echo_rx=m.required_min_echo_rx, diag=head.diag,
        poll=head.poll, final=head.final, cpi=head.cpi, demand=head.demand,
        multipoint=head.multipoint, auth=auth, version=head.version,
    )


def _auth(a: object, length: int) -> Auth:
    auth_type = a.auth_type  # type: ignore[attr-defined]
    auth_len = a.auth_len  # type: ignore[attr-defined]
    if MANDATORY_LEN + auth_len != length:
        raise BfdPacketError("auth-format", f"Auth Len {auth_len} does not end the packet (Length {length})")
    body = a.body  # type: ignore[attr-defined]
    if auth_type == AuthType.SIMPLE:
        if not 1 <= auth_len - 3 <= MAX_PASSWORD:
            raise BfdPacketError("auth-format", f"simple password of {auth_len - 3} octets (1 to 16)")
        return Auth(auth_type, body.key_id, password=bytes(body.password))
    if auth_type in AUTH_LEN:
        if auth_len != AUTH_LEN[AuthType(auth_type)]:
            raise BfdPacketError("auth-format", f"Auth Len {auth_len} for {AuthType(auth_type).name}, "
                                 f"not {AUTH_LEN[AuthType(auth_type)]}")
        return Auth(auth_type, body.key_id, sequence=body.sequence, digest=bytes(body.digest))
    raise BfdPacketError("auth-format", f"authentication type {auth_type} is reserved")


def encode_spec(p: ControlPacket, key: bytes = b"") -> bytes:
    """`encode` by the specification."""
    from proto.bfd_spec import BfdControl

    auth = None
    if p.auth is not None:
        a = p.auth
        if a.auth_type == AuthType.SIMPLE:
            auth = {"auth_type": a.auth_type, "auth_len": 3 + len(a.password),
                    "body": {"key_id": a.key_id, "password": a.password}}
        else:
            size = DIGEST[AuthType(a.auth_type)][1]
            auth = {"auth_type": a.auth_type, "auth_len": AUTH_LEN[AuthType(a.auth_type)],
                    "body": {"key_id": a.key_id, "reserved": 0, "sequence": a.sequence,
                             "digest": _padded(key, size)}}
    length = MANDATORY_LEN + (auth["auth_len"] if auth is not None else 0)  # type: ignore[index]
    raw = BfdControl.build({
        "head": {"version": p.version, "diag": p.diag, "state": p.state, "poll": p.poll, "final": p.final,
                 "cpi": p.cpi, "auth_present": auth is not None, "demand": p.demand,
                 "multipoint": p.multipoint},
        "detect_mult": p.detect_mult, "length": length, "my_discriminator": p.my_discriminator,
        "your_discriminator": p.your_discriminator, "desired_min_tx": p.desired_min_tx,
        "required_min_rx": p.required_min_rx, "required_min_echo_rx": p.required_min_echo_rx,
        "auth": auth,
    })
    if p.auth is not None and p.auth.auth_type in DIGEST:
        return sign(raw, key)
    return raw


def _padded(key: bytes, size: int) -> bytes:
    if len(key) > size:
        raise ValueError(f"a key of {len(key)} octets: at most {size} for this authentication type")
    return key + b"\0" * (size - len(key))


def sign(raw: bytes, key: bytes) -> bytes:
    """A keyed packet whose digest field holds the padded key, with the digest in its place
    (RFC 5880 6.7.3, 6.7.4: the hash of the whole packet with the key in the digest field)."""
    hash_fn, size = DIGEST[AuthType(raw[MANDATORY_LEN])]
    import hashlib

    return raw[:_DIGEST_OFFSET] + hashlib.new(hash_fn, raw).digest() + raw[_DIGEST_OFFSET + size:]


def digest_ok(raw: bytes, key: bytes) -> bool:
    """Whether a received keyed packet's digest is right for `key`."""
    auth_type = raw[MANDATORY_LEN]
    hash_fn, size = DIGEST[AuthType(auth_type)]
    if len(key) > size:
        return False
    received = raw[_DIGEST_OFFSET:_DIGEST_OFFSET + size]
    with_key = raw[:_DIGEST_OFFSET] + _padded(key, size) + raw[_DIGEST_OFFSET + size:]
    import hashlib
    import hmac

    return hmac.compare_digest(hashlib.new(hash_fn, with_key).digest(), received)


def length_of(raw: bytes) -> int:
    """The Length field (only for a packet `decode` accepted)."""
    return raw[3]


# ---------------------------------------------------------------- the fast path

_MANDATORY = struct.Struct(">BBBBIIIII")
_KEYED = struct.Struct(">BBBBI")  # type, len, key id, reserved, sequence
_SIMPLE = struct.Struct(">BBB")  # type, len, key id


def decode(data: bytes) -> ControlPacket:
    """The packet in `data` (a UDP payload), checked as RFC 5880 6.8.6 says before any session is
    chosen; raises BfdPacketError. Equal to `decode_spec` for every input."""
    n = len(data)
    if n < MANDATORY_LEN:
        raise BfdPacketError("length", f"{n} octets: shorter than the 24 of a Control packet")
    vd, flags, mult, length, mine, yours, tx, rx, echo = _MANDATORY.unpack_from(data)
    if vd >> 5 != VERSION:
        raise BfdPacketError("version", f"version {vd >> 5}, not 1")
    auth_present = flags & 0x04
    if length < (MIN_AUTH_LEN if auth_present else MANDATORY_LEN):
        raise BfdPacketError("length", f"Length field {length} below the minimum "
                             f"{MIN_AUTH_LEN if auth_present else MANDATORY_LEN}")
    if length > n:
        raise BfdPacketError("length", f"Length field {length} beyond the {n} octets received")
    if mult == 0:
        raise BfdPacketError("detect-mult", "Detect Mult is zero")
    if flags & 0x01:
        raise BfdPacketError("multipoint", "Multipoint (M) bit set")
    if mine == 0:
        raise BfdPacketError("my-discriminator", "My Discriminator is zero")
    auth = _fast_auth(data, length) if auth_present else None
    return ControlPacket(flags >> 6, mult, mine, yours, tx, rx, echo, vd & 0x1F, bool(flags & 0x20),
                         bool(flags & 0x10), bool(flags & 0x08), bool(flags & 0x02), False, auth, VERSION)


def _fast_auth(data: bytes, length: int) -> Auth:
    auth_type, auth_len = data[MANDATORY_LEN], data[MANDATORY_LEN + 1]
    if auth_type in AUTH_LEN:
        if MANDATORY_LEN + auth_len > length or auth_len < 8:
            raise BfdPacketError("auth-format", "authentication section does not fit the packet")
    elif MANDATORY_LEN + auth_len > length or auth_len < (3 if auth_type == AuthType.SIMPLE else 2):
        raise BfdPacketError("auth-format", "authentication section does not fit the packet")
    if MANDATORY_LEN + auth_len != length:
        raise BfdPacketError("auth-format", f"Auth Len {auth_len} does not end the packet (Length {length})")
    if auth_type == AuthType.SIMPLE:
        if not 1 <= auth_len - 3 <= MAX_PASSWORD:
            raise BfdPacketError("auth-format", f"simple password of {auth_len - 3} octets (1 to 16)")
        return Auth(auth_type, data[MANDATORY_LEN + 2], password=bytes(data[MANDATORY_LEN + 3:length]))
    if auth_type in AUTH_LEN:
        want = AUTH_LEN[AuthType(auth_type)]
        if auth_len != want:
            raise BfdPacketError("auth-format", f"Auth Len {auth_len} for {AuthType(auth_type).name}, "
                                 f"not {want}")
        _t, _l, key_id, _r, seq = _KEYED.unpack_from(data, MANDATORY_LEN)
        return Auth(auth_type, key_id, sequence=seq, digest=bytes(data[_DIGEST_OFFSET:length]))
    raise BfdPacketError("auth-format", f"authentication type {auth_type} is reserved")


def encode(p: ControlPacket, key: bytes = b"") -> bytes:
    """The packet's bytes; with a keyed authentication type, signed with `key` (its digest field
    is computed here, whatever `p.auth.digest` holds). Equal to `encode_spec`."""
    a = p.auth
    tail = b""
    if a is not None:
        if a.auth_type == AuthType.SIMPLE:
            tail = _SIMPLE.pack(a.auth_type, 3 + len(a.password), a.key_id) + a.password
        else:
            size = DIGEST[AuthType(a.auth_type)][1]
            tail = _KEYED.pack(a.auth_type, AUTH_LEN[AuthType(a.auth_type)], a.key_id, 0, a.sequence) + \
                _padded(key, size)
    flags = (p.state << 6) | (p.poll << 5) | (p.final << 4) | (p.cpi << 3) | ((a is not None) << 2) | \
        (p.demand << 1) | p.multipoint
    raw = _MANDATORY.pack((p.version << 5) | p.diag, flags, p.detect_mult, MANDATORY_LEN + len(tail),
                          p.my_discriminator, p.your_discriminator, p.desired_min_tx, p.required_min_rx,
                          p.required_min_echo_rx) + tail
    if a is not None and a.auth_type in DIGEST:
        return sign(raw, key)
    return raw
