"""The names of NOTIFICATION codes and subcodes (RFC 4271, RFC 4486, RFC 6608, RFC 7313, RFC 8538,
RFC 9234, RFC 9384) and the RFC 9003 shutdown communication, read from a code, subcode and data.

Apart from the wire format (`proto.bgp.notification`) so that the message model can describe a
NOTIFICATION without importing the module that decodes it.
"""

from __future__ import annotations

from proto.bgp.constants import CeaseSubcode, ErrorCode

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
SHUTDOWN_SUBCODES = (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET)


def is_known(code: int, subcode: int) -> bool:
    """Whether code/subcode is one this module can name (the set a NOTIFICATION may carry)."""
    return subcode in SUBCODE_NAMES.get(code, {})


def shutdown_text(code: int, subcode: int, data: bytes) -> str | None:
    """The RFC 9003 shutdown communication, or None when there is none or it is malformed (length
    beyond the data, invalid UTF-8) or empty. Octets after the communication are ignored."""
    if code != ErrorCode.CEASE or subcode not in SHUTDOWN_SUBCODES:
        return None
    if not data or data[0] == 0 or data[0] > len(data) - 1:
        return None
    try:
        return data[1 : 1 + data[0]].decode("utf-8")
    except UnicodeDecodeError:
        return None


def describe_error(code: int, subcode: int, data: bytes = b"") -> str:
    """One line for logs and tortiectl: code and subcode names, then the shutdown communication or
    the data in hex."""
    code_name = CODE_NAMES.get(code, f"Unknown error code {code}")
    subcode_name = SUBCODE_NAMES.get(code, {}).get(subcode, f"unknown subcode {subcode}")
    text = f"{code_name} / {subcode_name} ({code}/{subcode})"
    message = shutdown_text(code, subcode, data)
    if message is not None:
        printable = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in message)
        return f'{text}: "{printable}"'
    if data:
        return f"{text}, data {data.hex()}"
    return text
