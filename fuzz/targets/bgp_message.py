"""BGP messages under every negotiated variant: `decode_message` and the `Framer` + `decode_message_body`
path a session uses.

Input: one variant octet, one split octet, then the bytes of one message (or of garbage).
  variant bit 0: 4-octet AS; bit 1: extended messages (RFC 8654); bit 2: ADD-PATH receive for IPv4
  unicast; bit 3: ADD-PATH receive for IPv6 unicast; bit 4: extended next hop for IPv4 (RFC 8950).
Oracle: a decoded message, or MessageError with a NOTIFICATION code and subcode that exist; both
paths agree; and a decoded message re-encodes (with the sender's mirror of the variant) to bytes
that decode to the same message (RFC 7606 outcomes compared as what they mean: the attributes kept
and the NLRI, since a discarded attribute is not re-encoded).
"""

from __future__ import annotations

from collections.abc import Iterator

from fuzz.oracle import Finding, check_notification
from proto.bgp import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Framer,
    Message,
    MessageError,
    Negotiated,
    PathAttributes,
    Update,
    decode_message,
    decode_message_body,
    encode_message,
)

NAME = "bgp-message"
MAX_LEN = 4096 + 2
# the code this target exercises, for the line coverage the campaign reports
COVERS = ("proto/bgp/",)


def variant(octet: int) -> tuple[Negotiated, Negotiated]:
    """(what the receiver parses with, what the sender encoded with)."""
    add_path = frozenset(f for bit, f in ((4, IPV4_UNICAST), (8, IPV6_UNICAST)) if octet & bit)
    enh = frozenset({IPV4_UNICAST}) if octet & 16 else frozenset()
    four, ext = bool(octet & 1), bool(octet & 2)
    receive = Negotiated(four_octet_as=four, extended_message=ext, add_path_receive=add_path,
                         extended_next_hop=enh)
    send = Negotiated(four_octet_as=four, extended_message=ext, add_path_send=add_path, extended_next_hop=enh)
    return receive, send


def variant_octet(n: Negotiated) -> int:
    return (int(n.four_octet_as) | (2 if n.extended_message else 0) | (4 if IPV4_UNICAST in n.add_path_receive
            else 0) | (8 if IPV6_UNICAST in n.add_path_receive else 0)
            | (16 if IPV4_UNICAST in n.extended_next_hop else 0))


def seeds() -> Iterator[bytes]:
    from fuzz.captures import captured_messages

    for m in captured_messages():
        yield bytes((variant_octet(m.receive), len(m.data) // 2 & 0xFF)) + m.data


def _outcome(fn, *args) -> Message | MessageError:  # type: ignore[no-untyped-def]
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except MessageError as error:
        return error


def _meaning(msg: Message) -> object:
    if isinstance(msg, Update):
        # an attribute block that could not be parsed at all decodes as an empty PathAttributes
        # (with a treat-as-withdraw problem); it re-encodes as no attributes, which decodes as None
        attributes = None if msg.attributes == PathAttributes() else msg.attributes
        return (msg.withdrawn, attributes, msg.nlri, msg.mp_reach, msg.mp_unreach)
    return msg


def _same(a: Message | MessageError, b: Message | MessageError) -> bool:
    if isinstance(a, MessageError) or isinstance(b, MessageError):
        return (isinstance(a, MessageError) and isinstance(b, MessageError)
                and (a.code, a.subcode, a.data) == (b.code, b.subcode, b.data))
    return a == b


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    receive, send = variant(data[0])
    split, wire = data[1], data[2:]
    first = _outcome(decode_message, wire, receive)
    if isinstance(first, MessageError):
        check_notification(first.code, first.subcode, first.data, "decode_message")
    elif not isinstance(first, Message.__args__):  # type: ignore[attr-defined]
        raise Finding(f"decode_message returned {type(first).__name__}")

    # the stream path: the framer splits (in two reads), decode_message_body decodes
    framer = Framer(receive.max_message_len)
    try:
        framed = framer.feed(wire[:split]) + framer.feed(wire[split:])
    except MessageError as error:
        check_notification(error.code, error.subcode, error.data, "Framer.feed")
        if not isinstance(first, MessageError):
            raise Finding(f"the framer refuses a message decode_message takes: {error!r}") from None
        framed = None
    if framed is not None:
        if framer.pending and not framed:
            # an incomplete message: decode_message must have refused it as a length error
            if not isinstance(first, MessageError):
                raise Finding("decode_message took a message the framer still waits for the end of")
        elif len(framed) == 1 and not framer.pending:
            second = _outcome(decode_message_body, framed[0][0], framed[0][1], receive)
            if not _same(first, second):
                raise Finding(f"decode_message gave {first!r}, Framer + decode_message_body {second!r}")
    if isinstance(first, MessageError):
        return

    # decode-encode-decode
    try:
        again = encode_message(first, send)
    except ValueError:
        # documented: a message that no longer fits (a discarded attribute cannot make it longer,
        # but a re-encoded AS_PATH in 2-octet form with AS4_PATH can)
        return
    second = _outcome(decode_message, again, receive)
    if isinstance(second, MessageError):
        raise Finding(f"re-encoded {again.hex()} does not decode: {second!r} (first {first!r})")
    if _meaning(second) != _meaning(first):
        raise Finding(f"decode-encode-decode changed the message:\n  {first!r}\n  {second!r}")
