"""The family table: one row per AFI/SAFI with what update.py, nlri.py and packing.py read from it."""

from __future__ import annotations

import pytest

from proto import prefix as pf
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, AttrCode
from proto.bgp.family import FAMILIES, IPV4, IPV6, family
from proto.bgp.model import Negotiated, PathAttributes
from proto.bgp.packing import end_of_rib, pack_announcements, pack_withdrawals
from proto.bgp.update import decode_update


def test_rows() -> None:
    assert set(FAMILIES) == {IPV4_UNICAST, IPV6_UNICAST}
    assert family(1, 1) is IPV4 and family(2, 1) is IPV6 and family(1, 2) is None
    assert (IPV4.version, IPV4.address_octets, IPV4.max_length) == (pf.V4, 4, 32)
    assert (IPV6.version, IPV6.address_octets, IPV6.max_length) == (pf.V6, 16, 128)
    assert IPV4.in_update_fields and not IPV6.in_update_fields
    assert IPV4.split(bytes((26, 10, 0, 0, 64)), IPV4.afi) == [pf.parse("10.0.0.64/26")]
    assert IPV6.split_spec(bytes((32, 0x20, 0x01, 0x0D, 0xB8)), IPV6.afi) == [pf.parse("2001:db8::/32")]


def test_next_hop_lengths_follow_rfc_8950() -> None:
    plain = Negotiated()
    extended = Negotiated(extended_next_hop=frozenset({IPV4_UNICAST}))
    assert IPV4.next_hop_lengths_for(plain) == (4,)
    assert IPV4.next_hop_lengths_for(extended) == (4, 16, 32)
    assert IPV6.next_hop_lengths_for(plain) == IPV6.next_hop_lengths_for(extended) == (16, 32)


def _mp_reach(afi: int, safi: int, hop: bytes) -> bytes:
    value = afi.to_bytes(2, "big") + bytes((safi, len(hop))) + hop + b"\0"
    attribute = bytes((0x90, AttrCode.MP_REACH_NLRI)) + len(value).to_bytes(2, "big") + value
    block = attribute + bytes((0x40, 1, 1, 0, 0x40, 2, 0))
    return b"\0\0" + len(block).to_bytes(2, "big") + block


@pytest.mark.parametrize(
    ("afi", "safi", "hop_len", "negotiated", "ok"),
    [
        (2, 1, 16, Negotiated(), True),
        (2, 1, 32, Negotiated(), True),
        (2, 1, 4, Negotiated(), False),
        (1, 1, 4, Negotiated(), True),
        (1, 1, 16, Negotiated(), False),
        (1, 1, 16, Negotiated(extended_next_hop=frozenset({IPV4_UNICAST})), True),
    ],
)
def test_decoder_takes_next_hop_lengths_from_the_table(
    afi: int, safi: int, hop_len: int, negotiated: Negotiated, ok: bool
) -> None:
    update = decode_update(_mp_reach(afi, safi, b"\x20" + bytes(hop_len - 1)), negotiated)
    assert update.mp_reach is not None
    assert (update.problems == ()) is ok
    assert bool(update.mp_reach.next_hop) is ok


def test_family_without_a_row_is_discarded_and_refused() -> None:
    update = decode_update(_mp_reach(1, 128, bytes(12)), Negotiated())  # VPNv4: no row
    assert update.mp_reach is None
    assert [(p.action, p.code) for p in update.problems] == [("attribute-discard", AttrCode.MP_REACH_NLRI)]
    with pytest.raises(ValueError, match="unsupported AFI/SAFI"):
        pack_withdrawals((1, 128), [pf.parse("10.0.0.0/8")], Negotiated())
    with pytest.raises(ValueError, match="unsupported AFI/SAFI"):
        end_of_rib((25, 65))


def test_packer_places_routes_as_the_table_says() -> None:
    attrs = PathAttributes(origin=0, as_path=())
    v4 = pack_announcements(IPV4_UNICAST, attrs, "10.0.0.1", [pf.parse("10.1.0.0/16")], Negotiated())
    assert decode_update(v4[0][19:], Negotiated()).nlri == [pf.parse("10.1.0.0/16")]
    v6 = pack_announcements(IPV6_UNICAST, attrs, "fd00::1", [pf.parse("fd00:1::/64")], Negotiated())
    reach = decode_update(v6[0][19:], Negotiated()).mp_reach
    assert reach is not None and reach.nlri == [pf.parse("fd00:1::/64")] and reach.next_hop == ("fd00::1",)
    with pytest.raises(ValueError, match="extended next hop"):
        pack_announcements(IPV4_UNICAST, attrs, "fd00::1", [pf.parse("10.1.0.0/16")], Negotiated())
    with pytest.raises(ValueError, match="4 octets"):
        pack_announcements(IPV6_UNICAST, attrs, "10.0.0.1", [pf.parse("fd00:1::/64")], Negotiated())
    assert end_of_rib(IPV4_UNICAST) == b"\xff" * 16 + bytes((0, 23, 2, 0, 0, 0, 0))
