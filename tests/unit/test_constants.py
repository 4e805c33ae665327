from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, CeaseSubcode, MsgType
from proto.bgp.model import Negotiated, Update


def test_families_and_codes() -> None:
    assert IPV4_UNICAST == (1, 1)
    assert IPV6_UNICAST == (2, 1)
    assert MsgType.ROUTE_REFRESH == 5
    assert CeaseSubcode.ADMINISTRATIVE_SHUTDOWN == 2


def test_negotiated_message_limit() -> None:
    assert Negotiated().max_message_len == 4096
    assert Negotiated(extended_message=True).max_message_len == 65535


def test_end_of_rib_ipv4() -> None:
    assert Update().end_of_rib() == IPV4_UNICAST
    assert Update(nlri=[b"\x18\x0a\x00\x00"]).end_of_rib() is None
