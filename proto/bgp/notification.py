"""NOTIFICATION (RFC 4271 section 4.5): wire format, human descriptions of every code and subcode
(RFC 4271, RFC 4486, RFC 6608, RFC 7313, RFC 8538, RFC 9234, RFC 9384) and the RFC 9003 shutdown
communication carried by Cease / Administrative Shutdown and Cease / Administrative Reset."""

from __future__ import annotations

from construct import GreedyBytes, Int8ub, Struct

from proto.bgp.constants import HEADER_LEN, CeaseSubcode, ErrorCode, HeaderError
from proto.bgp.model import MessageError, Notification

NotificationSpec = Struct(
    "code" / Int8ub,
    "subcode" / Int8ub,
    "data" / GreedyBytes,
)

CODE_NAMES: dict[int, str] = {
    1: "Message Header Error",
    2: "OPEN Message Error",
    3: "UPDATE Message Error",
    4: "Hold Timer Expired",
    5: "Finite State Machine Error",
    6: "Cease",
    7: "ROUTE-REFRESH Message Error",
}

# Subcode 0 is "Unspecific" wherever a code has subcodes (RFC 4271 errata 4493, IANA registry);
# deprecated subcodes keep their old names so a peer's NOTIFICATION still reads well in logs.
SUBCODE_NAMES: dict[int, dict[int, str]] = {
    1: {
        0: "Unspecific",
        1: "Connection Not Synchronized",
        2: "Bad Message Length",
        3: "Bad Message Type",
    },
    2: {
        0: "Unspecific",
        1: "Unsupported Version Number",
        2: "Bad Peer AS",
        3: "Bad BGP Identifier",
        4: "Unsupported Optional Parameter",
        5: "Authentication Failure (deprecated)",
        6: "Unacceptable Hold Time",
        7: "Unsupported Capability",
        8: "Grouping Conflict (deprecated)",
        9: "Grouping Required (deprecated)",
        10: "Capability Value Mismatch (deprecated)",
        11: "Role Mismatch",
    },
    3: {
        0: "Unspecific",
        1: "Malformed Attribute List",
        2: "Unrecognized Well-known Attribute",
        3: "Missing Well-known Attribute",
        4: "Attribute Flags Error",
        5: "Attribute Length Error",
        6: "Invalid ORIGIN Attribute",
        7: "AS Routing Loop (deprecated)",
        8: "Invalid NEXT_HOP Attribute",
        9: "Optional Attribute Error",
        10: "Invalid Network Field",
        11: "Malformed AS_PATH",
    },
    4: {0: "Unspecific"},
    5: {
        0: "Unspecified Error",
        1: "Receive Unexpected Message in OpenSent State",
        2: "Receive Unexpected Message in OpenConfirm State",
        3: "Receive Unexpected Message in Established State",
    },
    6: {
        0: "Unspecific",
        1: "Maximum Number of Prefixes Reached",
        2: "Administrative Shutdown",
        3: "Peer De-configured",
        4: "Administrative Reset",
        5: "Connection Rejected",
        6: "Other Configuration Change",
        7: "Connection Collision Resolution",
        8: "Out of Resources",
        9: "Hard Reset",
        10: "BFD Down",
    },
    7: {
        0: "Reserved",
        1: "Invalid Message Length",
    },
}

# RFC 9003 section 2: the length octet allows up to 255 octets of UTF-8.
MAX_SHUTDOWN_LEN = 255
_SHUTDOWN_SUBCODES = (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET)


def is_known(code: int, subcode: int) -> bool:
    """Whether code/subcode is one this module can name (the set a NOTIFICATION may carry)."""
    return subcode in SUBCODE_NAMES.get(code, {})


def decode_notification(body: bytes) -> Notification:
    if len(body) < 2:  # the header check already demands 21 octets; this guards direct callers
        raise MessageError(
            ErrorCode.MESSAGE_HEADER,
            HeaderError.BAD_MESSAGE_LENGTH,
            (HEADER_LEN + len(body)).to_bytes(2, "big"),
            "NOTIFICATION shorter than 21 octets",
        )
    parsed = NotificationSpec.parse(body)
    return Notification(parsed.code, parsed.subcode, parsed.data)


def encode_notification(notification: Notification) -> bytes:
    return NotificationSpec.build(
        {"code": notification.code, "subcode": notification.subcode, "data": notification.data}
    )


def shutdown_message(notification: Notification) -> str | None:
    """The RFC 9003 shutdown communication, or None when there is none or it is malformed (length
    beyond the data, invalid UTF-8) or empty. Octets after the communication are ignored."""
    if notification.code != ErrorCode.CEASE or notification.subcode not in _SHUTDOWN_SUBCODES:
        return None
    data = notification.data
    if not data or data[0] == 0 or data[0] > len(data) - 1:
        return None
    try:
        return data[1 : 1 + data[0]].decode("utf-8")
    except UnicodeDecodeError:
        return None


def notification_with_shutdown(subcode: int, text: str) -> Notification:
    """A Cease / Administrative Shutdown or Reset carrying `text` (RFC 9003). Text longer than 255
    octets of UTF-8 is cut at the last whole character that fits, as the wire allows no more."""
    if subcode not in _SHUTDOWN_SUBCODES:
        raise ValueError("a shutdown communication goes with Cease subcode 2 or 4 only")
    raw = text.encode("utf-8")
    if len(raw) > MAX_SHUTDOWN_LEN:
        raw = raw[:MAX_SHUTDOWN_LEN].decode("utf-8", errors="ignore").encode("utf-8")
    return Notification(ErrorCode.CEASE, subcode, bytes((len(raw),)) + raw)


def describe(notification: Notification) -> str:
    """One line for logs and tortiectl: code and subcode names, then the shutdown communication or
    the data in hex."""
    code, subcode = notification.code, notification.subcode
    code_name = CODE_NAMES.get(code, f"Unknown error code {code}")
    subcode_name = SUBCODE_NAMES.get(code, {}).get(subcode, f"unknown subcode {subcode}")
    text = f"{code_name} / {subcode_name} ({code}/{subcode})"
    message = shutdown_message(notification)
    if message is not None:
        printable = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in message)
        return f'{text}: "{printable}"'
    if notification.data:
        return f"{text}, data {notification.data.hex()}"
    return text
