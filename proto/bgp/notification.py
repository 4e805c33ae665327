"""NOTIFICATION (RFC 4271 section 4.5): wire format, and the RFC 9003 shutdown communication carried
by Cease / Administrative Shutdown and Cease / Administrative Reset. The names of the codes and
subcodes live in `proto.bgp.error_names` (re-exported here)."""

from __future__ import annotations

from construct import GreedyBytes, Int8ub, Struct

from proto.bgp.constants import HEADER_LEN, CeaseSubcode, ErrorCode, HeaderError
from proto.bgp.error_names import (
    CODE_NAMES,
    MAX_SHUTDOWN_LEN,
    SHUTDOWN_SUBCODES,
    SUBCODE_NAMES,
    describe_error,
    is_known,
    shutdown_text,
)
from proto.bgp.model import MessageError, Notification

__all__ = [
    "CODE_NAMES",
    "SUBCODE_NAMES",
    "NotificationSpec",
    "decode_notification",
    "describe",
    "encode_notification",
    "is_known",
    "notification_with_shutdown",
    "shutdown_message",
]

NotificationSpec = Struct(
    "code" / Int8ub,
    "subcode" / Int8ub,
    "data" / GreedyBytes,
)

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
    return shutdown_text(notification.code, notification.subcode, notification.data)


def notification_with_shutdown(subcode: int, text: str) -> Notification:
    """A Cease / Administrative Shutdown or Reset carrying `text` (RFC 9003). Text longer than 255
    octets of UTF-8 is cut at the last whole character that fits, as the wire allows no more."""
    if subcode not in SHUTDOWN_SUBCODES:
        raise ValueError("a shutdown communication goes with Cease subcode 2 or 4 only")
    raw = text.encode("utf-8")
    if len(raw) > MAX_SHUTDOWN_LEN:
        raw = raw[:MAX_SHUTDOWN_LEN].decode("utf-8", errors="ignore").encode("utf-8")
    return Notification(ErrorCode.CEASE, subcode, bytes((len(raw),)) + raw)


def hard_reset(inner: Notification) -> Notification:
    """RFC 8538 section 3: Cease / Hard Reset carrying the NOTIFICATION it stands for (its code,
    subcode and data): the receiver ends graceful restart and withdraws the sender's routes."""
    return Notification(ErrorCode.CEASE, CeaseSubcode.HARD_RESET,
                        bytes((inner.code, inner.subcode)) + inner.data)


def is_hard_reset(notification: Notification | None) -> bool:
    return (notification is not None and notification.code == ErrorCode.CEASE
            and notification.subcode == CeaseSubcode.HARD_RESET)


def hard_reset_inner(notification: Notification) -> Notification | None:
    """The NOTIFICATION a Hard Reset carries, or None when it carries none (data shorter than 2)."""
    if not is_hard_reset(notification) or len(notification.data) < 2:
        return None
    data = notification.data
    return Notification(data[0], data[1], data[2:])


def describe(notification: Notification) -> str:
    """One line for logs and tortiectl: code and subcode names, then the shutdown communication or
    the data in hex; a Hard Reset (RFC 8538) names the NOTIFICATION it carries."""
    inner = hard_reset_inner(notification)
    if inner is not None:
        return f"Cease / Hard Reset (6/9) for {describe(inner)}"
    return describe_error(notification.code, notification.subcode, notification.data)
