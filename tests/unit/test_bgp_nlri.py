"""NLRI lists: the hand-written split equals the construct specification on valid and invalid input,
both give `proto.prefix` values with the trailing bits cleared, truncation is always an error."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import prefix as pf
from proto.bgp import nlri
from proto.bgp.prefix import (
    join_path_id,
    network_from_prefix,
    prefix_from_network,
    split_path_id,
)


def normalise(wire: bytes) -> bytes:
    """A wire entry with the bits past its length cleared (computed without the code under test)."""
    length = wire[0]
    if not length & 7:
        return wire
    return wire[:-1] + bytes((wire[-1] & (0xFF00 >> (length & 7)) & 0xFF,))


def value(wire: bytes, afi: int, add_path: bool) -> bytes:
    """The proto.prefix value an NLRI entry decodes to, computed through ipaddress."""
    head = wire[:4] if add_path else b""
    body = normalise(wire[len(head):])
    size = 4 if afi == 1 else 16
    address = body[1:].ljust(size, b"\0")
    net = ipaddress.ip_network((address, body[0])) if afi == 1 else ipaddress.IPv6Network((address, body[0]))
    return head + pf.from_network(net)

SETTINGS = settings(max_examples=100, deadline=None)


@st.composite
def entries(
    draw: st.DrawFn, afi: int, add_path: bool, dirty: bool = False, same_length: bool = False
) -> bytes:
    """One wire entry; with `dirty`, the bits past the length may be set."""
    bits = 32 if afi == 1 else 128
    length = draw(st.integers(0, bits)) if not same_length else 26 if afi == 1 else 64
    address = draw(st.binary(min_size=(length + 7) // 8, max_size=(length + 7) // 8))
    wire = bytes((length,)) + address
    if not dirty:
        wire = normalise(wire)
    if add_path:
        wire = draw(st.binary(min_size=4, max_size=4)) + wire
    return wire


def values(afi: int, add_path: bool, same_length: bool = False) -> st.SearchStrategy[bytes]:
    """One entry as the decoders give it: a proto.prefix value (after its path identifier)."""
    return entries(afi, add_path, same_length=same_length).map(lambda w: value(w, afi, add_path))


@st.composite
def lists(draw: st.DrawFn, dirty: bool = False) -> tuple[int, bool, list[bytes]]:
    afi = draw(st.sampled_from([1, 2]))
    add_path = draw(st.booleans())
    same = draw(st.booleans())  # exercises the uniform-length path
    items = draw(st.lists(entries(afi, add_path, dirty, same), max_size=20))
    return afi, add_path, items


def result(fn: Callable[[bytes, int, bool], list[bytes]], data: bytes, afi: int, add_path: bool) -> object:
    try:
        return ("ok", fn(data, afi, add_path))
    except nlri.NlriError as exc:
        return ("error", exc.kind, exc.offset)


@SETTINGS
@given(case=lists())
def test_split_round_trips_and_equals_spec(case: tuple[int, bool, list[bytes]]) -> None:
    afi, add_path, items = case
    data = b"".join(items)
    values = [value(i, afi, add_path) for i in items]
    assert nlri.split(data, afi, add_path) == values
    assert nlri.split_spec(data, afi, add_path) == values
    assert nlri.join(values) == data


@SETTINGS
@given(case=lists(dirty=True))
def test_trailing_bits_are_normalised_by_both(case: tuple[int, bool, list[bytes]]) -> None:
    afi, add_path, items = case
    data = b"".join(items)
    expected = [value(i, afi, add_path) for i in items]
    assert nlri.split(data, afi, add_path) == expected
    assert nlri.split_spec(data, afi, add_path) == expected


@SETTINGS
@given(afi=st.sampled_from([1, 2]), add_path=st.booleans(), data=st.binary(max_size=60))
def test_any_bytes_give_the_same_result_or_error(afi: int, add_path: bool, data: bytes) -> None:
    assert result(nlri.split, data, afi, add_path) == result(nlri.split_spec, data, afi, add_path)


@SETTINGS
@given(case=lists(), cut=st.integers(1, 20), junk=st.binary(min_size=1, max_size=3))
def test_mutated_lists_agree(case: tuple[int, bool, list[bytes]], cut: int, junk: bytes) -> None:
    afi, add_path, items = case
    data = b"".join(items)
    for mutated in (data[:-cut], data + junk, junk + data):
        assert result(nlri.split, mutated, afi, add_path) == result(nlri.split_spec, mutated, afi, add_path)


@pytest.mark.parametrize(
    ("data", "afi", "add_path", "kind"),
    [
        (bytes((33, 1, 2, 3, 4, 5)), 1, False, "length"),
        (bytes((129,)) + bytes(17), 2, False, "length"),
        (bytes((24, 10, 0)), 1, False, "truncated"),
        (bytes((24, 10, 0, 0, 8)), 1, False, "truncated"),  # a second entry with no address octet
        (bytes((0, 0, 0, 1)), 1, True, "truncated"),  # path identifier without a length
        (bytes((0, 0, 0, 1, 33)) + bytes(5), 1, True, "length"),
        (bytes((26, 10, 0, 0, 64)) * 20 + bytes((26, 10)), 1, False, "truncated"),
    ],
)
def test_malformed_lists_raise(data: bytes, afi: int, add_path: bool, kind: str) -> None:
    for split in (nlri.split, nlri.split_spec):
        with pytest.raises(nlri.NlriError) as info:
            split(data, afi, add_path)
        assert info.value.kind == kind


def test_host_bits_normalised_in_every_path() -> None:
    single = bytes((26, 10, 0, 0, 0x7F))
    block = pf.parse("10.0.0.64/26")
    assert nlri.split(single, 1) == [block]
    uniform = single * 16
    assert nlri.split(uniform, 1) == [block] * 16
    assert nlri.split(bytes((0, 0, 0, 7)) + single, 1, True) == [bytes((0, 0, 0, 7)) + block]
    assert nlri.split(bytes((20, 10, 1, 0xFF)) * 3, 1) == [pf.parse("10.1.240.0/20")] * 3


def test_zero_length_prefix() -> None:
    assert nlri.split(b"\0", 1) == [pf.parse("0.0.0.0/0")]
    assert nlri.split(b"\0\0", 2) == [pf.parse("::/0")] * 2


# ---------------------------------------------------------------- prefix conversions


@SETTINGS
@given(
    network=st.one_of(
        st.builds(
            lambda a, n: ipaddress.ip_network((a, n), strict=False),
            st.integers(0, 2**32 - 1),
            st.integers(0, 32),
        ),
        st.builds(
            lambda a, n: ipaddress.IPv6Network((a, n), strict=False),
            st.integers(0, 2**128 - 1),
            st.integers(0, 128),
        ),
    ),
    path_id=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
def test_prefix_network_round_trip(network: ipaddress.IPv4Network, path_id: int | None) -> None:
    key = prefix_from_network(network, path_id)
    afi = 1 if network.version == 4 else 2
    assert network_from_prefix(afi, key, add_path=path_id is not None) == network
    head = 4 if path_id is not None else 0
    wire = nlri.join([key])
    assert nlri.split(wire, afi, path_id is not None) == [key]
    if path_id is not None:
        assert split_path_id(key) == (path_id, key[4:])
        assert join_path_id(path_id, key[4:]) == key
    assert len(wire) == head + 1 + (network.prefixlen + 7) // 8


def test_prefix_from_text_and_bad_keys() -> None:
    assert prefix_from_network("10.1.2.0/24") == bytes((4, 24, 10, 1, 2, 0))
    assert prefix_from_network("2001:db8::/32") == bytes((6, 32, 0x20, 0x01, 0x0D, 0xB8)) + bytes(12)
    with pytest.raises(ValueError):
        network_from_prefix(1, bytes((4, 33, 1, 2, 3, 4)))
    with pytest.raises(ValueError):
        network_from_prefix(1, bytes((4, 24, 10, 1)))
    with pytest.raises(ValueError):
        network_from_prefix(2, bytes((4, 24, 10, 1, 2, 0)))


def test_uniform_wire_only_for_one_size_and_one_length() -> None:
    blocks = [pf.parse(f"10.0.{i}.0/26") for i in range(10)]
    wire, size = nlri.uniform_wire(blocks)  # type: ignore[misc]
    assert size == 5 and wire == b"".join(nlri.entry_wire(p) for p in blocks)
    with_ids = [i.to_bytes(4, "big") + p for i, p in enumerate(blocks)]
    assert nlri.uniform_wire(with_ids) == (b"".join(nlri.entry_wire(p) for p in with_ids), 9)
    assert nlri.uniform_wire(blocks[:7]) is None  # too few to be worth it
    assert nlri.uniform_wire([*blocks, pf.parse("10.1.0.0/24")]) is None  # another length
    assert nlri.uniform_wire([*blocks, pf.parse("fd00::/64")]) is None  # another size
    mixed = [*blocks, with_ids[0]]
    assert nlri.join(mixed) == b"".join(nlri.entry_wire(p) for p in mixed)
