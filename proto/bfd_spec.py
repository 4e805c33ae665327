"""The construct specification of a BFD Control packet: proto.bfd's reference for its fast path, and the
parser of `decode_spec` / `encode_spec`. A module of its own so that bgpd loads construct only when it
is asked for (tests, tools), as for proto.bgp's specifications."""

from __future__ import annotations

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Flag,
    If,
    Int8ub,
    Int32ub,
    Struct,
    Switch,
    this,
)

# ---------------------------------------------------------------- the specification

SimplePassword = Struct(
    "key_id" / Int8ub,
    "password" / Bytes(this._.auth_len - 3),
)

KeyedDigest = Struct(
    "key_id" / Int8ub,
    "reserved" / Int8ub,
    "sequence" / Int32ub,
    "digest" / Bytes(this._.auth_len - 8),
)

AuthSection = Struct(
    "auth_type" / Int8ub,
    "auth_len" / Int8ub,
    "body" / Switch(this.auth_type, {
        # RFC 5880 4.1's Auth Type numbers (proto.bfd.AuthType; not imported: proto.bfd loads this module)
        1: SimplePassword,  # simple password
        2: KeyedDigest,  # keyed MD5
        3: KeyedDigest,  # meticulous keyed MD5
        4: KeyedDigest,  # keyed SHA1
        5: KeyedDigest,  # meticulous keyed SHA1
    }, default=Bytes(this.auth_len - 2)),  # reserved types: kept, and refused by `decode`
)

BfdMandatory = Struct(
    "head" / BitStruct(
        "version" / BitsInteger(3),
        "diag" / BitsInteger(5),
        "state" / BitsInteger(2),
        "poll" / Flag,
        "final" / Flag,
        "cpi" / Flag,
        "auth_present" / Flag,
        "demand" / Flag,
        "multipoint" / Flag,
    ),
    "detect_mult" / Int8ub,
    "length" / Int8ub,
    "my_discriminator" / Int32ub,
    "your_discriminator" / Int32ub,
    "desired_min_tx" / Int32ub,  # microseconds, as every interval here
    "required_min_rx" / Int32ub,
    "required_min_echo_rx" / Int32ub,
)

BfdControl = Struct(
    *BfdMandatory.subcons,
    "auth" / If(this.head.auth_present, AuthSection),
)
