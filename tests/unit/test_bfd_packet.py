"""BFD Control packets (proto/bfd.py): the hand-written codec against the construct specification for
any input (Hypothesis), every refusal of RFC 5880 6.8.6 by its reason, the authentication digests, and
Wireshark's dissector as an independent oracle for what we encode."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.bfd import (
    AUTH_LEN,
    Auth,
    AuthType,
    BfdPacketError,
    ControlPacket,
    decode,
    decode_spec,
    digest_ok,
    encode,
    encode_spec,
)

u32 = st.integers(0, 2**32 - 1)


@st.composite
def auths(draw: st.DrawFn) -> tuple[Auth | None, bytes]:
    kind = draw(st.sampled_from([None, *AuthType]))
    if kind is None:
        return None, b""
    key_id = draw(st.integers(0, 255))
    if kind == AuthType.SIMPLE:
        pw = draw(st.binary(min_size=1, max_size=16))
        return Auth(kind, key_id, password=pw), b""
    size = 16 if kind in (AuthType.KEYED_MD5, AuthType.METICULOUS_KEYED_MD5) else 20
    key = draw(st.binary(min_size=1, max_size=size))
    return Auth(kind, key_id, sequence=draw(u32)), key


@st.composite
def packets(draw: st.DrawFn) -> tuple[ControlPacket, bytes]:
    auth, key = draw(auths())
    p = ControlPacket(
        state=draw(st.integers(0, 3)), detect_mult=draw(st.integers(1, 255)),
        my_discriminator=draw(st.integers(1, 2**32 - 1)), your_discriminator=draw(u32),
        desired_min_tx=draw(u32), required_min_rx=draw(u32), required_min_echo_rx=draw(u32),
        diag=draw(st.integers(0, 31)), poll=draw(st.booleans()), final=draw(st.booleans()),
        cpi=draw(st.booleans()), demand=draw(st.booleans()), auth=auth,
    )
    return p, key


def outcome(fn: object, data: bytes) -> object:
    try:
        return fn(data)  # type: ignore[operator]
    except BfdPacketError as exc:
        return ("refused", exc.reason)


@settings(max_examples=400, deadline=None)
@given(packets())
def test_encode_equals_the_specification_and_decodes_back(pk: tuple[ControlPacket, bytes]) -> None:
    p, key = pk
    raw = encode(p, key)
    assert raw == encode_spec(p, key)
    back = decode(raw)
    assert back == decode_spec(raw)
    if p.auth is not None and p.auth.auth_type != AuthType.SIMPLE:
        assert digest_ok(raw, key)
        assert back.auth is not None and back.auth.sequence == p.auth.sequence
        back = ControlPacket(**{f: getattr(back, f) for f in back.__slots__ if f != "auth"},  # type: ignore[attr-defined]
                             auth=Auth(back.auth.auth_type, back.auth.key_id, sequence=back.auth.sequence))
    assert back == p


@settings(max_examples=600, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_decode_equals_the_specification_on_any_bytes(data: bytes) -> None:
    assert outcome(decode, data) == outcome(decode_spec, data)


@settings(max_examples=400, deadline=None)
@given(packets(), st.integers(0, 51), st.integers(0, 255), st.integers(0, 8))
def test_decode_equals_the_specification_on_damaged_packets(pk: tuple[ControlPacket, bytes], pos: int,
                                                             value: int, cut: int) -> None:
    raw = bytearray(encode(*pk))
    if pos < len(raw):
        raw[pos] = value
    data = bytes(raw[: len(raw) - cut]) if cut else bytes(raw)
    assert outcome(decode, data) == outcome(decode_spec, data)


BASE = ControlPacket(state=1, detect_mult=3, my_discriminator=7, your_discriminator=0,
                     desired_min_tx=1_000_000, required_min_rx=300_000)


def patched(raw: bytes, offset: int, value: int) -> bytes:
    b = bytearray(raw)
    b[offset] = value
    return bytes(b)


@pytest.mark.parametrize(("data", "reason"), [
    (encode(BASE)[:23], "length"),
    (patched(encode(BASE), 0, 0x40), "version"),  # version 2
    (patched(encode(BASE), 0, 0x00), "version"),  # version 0
    (patched(encode(BASE), 3, 23), "length"),  # Length below 24
    (patched(encode(BASE), 3, 40), "length"),  # Length beyond the datagram
    (patched(encode(BASE), 2, 0), "detect-mult"),
    (patched(encode(BASE), 1, encode(BASE)[1] | 0x01), "multipoint"),
    (encode(BASE)[:4] + b"\0\0\0\0" + encode(BASE)[8:], "my-discriminator"),
    (patched(encode(BASE), 1, encode(BASE)[1] | 0x04), "length"),  # A bit with Length 24
    (patched(patched(encode(BASE) + b"\x02\x05\x01", 1, encode(BASE)[1] | 0x04), 3, 27), "auth-format"),
    (patched(patched(encode(BASE) + b"\x09\x04\x01\x00", 1, encode(BASE)[1] | 0x04), 3, 28), "auth-format"),
])
def test_every_refusal_has_its_reason(data: bytes, reason: str) -> None:
    for fn in (decode, decode_spec):
        with pytest.raises(BfdPacketError) as info:
            fn(data)
        assert info.value.reason == reason


def test_a_longer_datagram_is_read_up_to_its_length_field() -> None:
    raw = encode(BASE)
    assert decode(raw + b"trailing") == BASE


@pytest.mark.parametrize("kind", [t for t in AuthType if t != AuthType.SIMPLE])
def test_a_keyed_digest_needs_the_same_key_and_covers_every_octet(kind: AuthType) -> None:
    p = ControlPacket(state=3, detect_mult=3, my_discriminator=1, your_discriminator=2, desired_min_tx=300_000,
                      required_min_rx=300_000, auth=Auth(kind, 5, sequence=77))
    raw = encode(p, b"s3cret")
    assert len(raw) == 24 + AUTH_LEN[kind]
    assert digest_ok(raw, b"s3cret")
    assert not digest_ok(raw, b"s3creT")
    assert not digest_ok(patched(raw, 9, raw[9] ^ 1), b"s3cret")  # your discriminator changed in flight
    seq = struct.unpack_from(">I", raw, 28)[0]
    assert seq == 77


# ---------------------------------------------------------------- Wireshark as the oracle

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # LINKTYPE_RAW


def _ipv4_udp(payload: bytes, sport: int = 49152, dport: int = 3784) -> bytes:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(udp), 1, 0, 255, 17, 0,
                       bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    total = sum(struct.unpack(">10H", head))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    head = head[:10] + struct.pack(">H", ~total & 0xFFFF) + head[12:]
    return head + udp


def test_wireshark_reads_what_we_encode(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (scripts/setup.sh installs it)")
    cases = [
        ControlPacket(state=3, detect_mult=3, my_discriminator=0x11223344, your_discriminator=0x55667788,
                      desired_min_tx=300_000, required_min_rx=250_000, diag=1, poll=True),
        ControlPacket(state=1, detect_mult=5, my_discriminator=9, your_discriminator=0, desired_min_tx=1_000_000,
                      required_min_rx=300_000, final=True, auth=Auth(AuthType.SIMPLE, 3, password=b"pw")),
        ControlPacket(state=2, detect_mult=3, my_discriminator=10, your_discriminator=11, desired_min_tx=300_000,
                      required_min_rx=300_000, diag=3, auth=Auth(AuthType.METICULOUS_KEYED_SHA1, 4, sequence=99)),
    ]
    pcap = tmp_path / "bfd.pcap"
    with open(pcap, "wb") as f:
        f.write(PCAP_HEADER)
        for i, p in enumerate(cases):
            frame = _ipv4_udp(encode(p, b"key"))
            f.write(struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame)
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "json", "-J", "bfd"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    frames = [f["_source"]["layers"]["bfd"] for f in json.loads(out)]
    assert len(frames) == len(cases)

    def flat(d: object, out: dict[str, str]) -> dict[str, str]:
        if isinstance(d, dict):
            for k, v in d.items():
                if isinstance(v, (dict, list)):
                    flat(v, out)
                else:
                    out[k] = str(v)
        elif isinstance(d, list):
            for v in d:
                flat(v, out)
        return out

    for p, frame in zip(cases, frames):
        f = flat(frame, {})
        assert int(f["bfd.version"]) == 1
        assert int(f["bfd.diag"], 0) == p.diag
        assert int(f["bfd.sta"], 0) == p.state
        assert int(f["bfd.detect_time_multiplier"]) == p.detect_mult
        assert int(f["bfd.my_discriminator"], 0) == p.my_discriminator
        assert int(f["bfd.your_discriminator"], 0) == p.your_discriminator
        assert int(f["bfd.desired_min_tx_interval"]) == p.desired_min_tx
        assert int(f["bfd.required_min_rx_interval"]) == p.required_min_rx
        assert f["bfd.flags.p"] in ("1", "True") if p.poll else f["bfd.flags.p"] in ("0", "False")
        assert f["bfd.flags.f"] in ("1", "True") if p.final else f["bfd.flags.f"] in ("0", "False")
        if p.auth is not None:
            assert int(f["bfd.auth.type"]) == p.auth.auth_type
            assert int(f["bfd.auth.key"]) == p.auth.key_id
            if p.auth.auth_type == AuthType.SIMPLE:
                assert f["bfd.auth.password"] == p.auth.password.decode()
            else:
                assert int(f["bfd.auth.seq_num"], 0) == p.auth.sequence
