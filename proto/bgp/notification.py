"""NOTIFICATION (RFC 4271 section 4.5): wire format, the RFC 9003 shutdown communication carried by
Cease / Administrative Shutdown and Cease / Administrative Reset, and the RFC 8538 Hard Reset that
carries another NOTIFICATION. The names of the codes and subcodes live in `proto.bgp.error_names`
(re-exported here).

The codec is hand-written: code, subcode, and the data kept as octets (the shutdown communication
and the Hard Reset's inner NOTIFICATION are read from them on request). The construct specification
is `proto.bgp.message_spec.NotificationSpec`; `decode_notification_spec` and
`encode_notification_spec` go through it, and tests/unit/test_bgp_notification.py holds both paths
equal. Encoding a code or subcode out of range goes to the specification to raise its error.
"""

from __future__ import annotations

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
    "decode_notification",
    "decode_notification_spec",
    "describe",
    "encode_notification",
    "encode_notification_spec",
    "is_known",
    "notification_with_shutdown",
    "shutdown_message",
]


def _check_length(body: bytes) -> None:
    if len(body) < 2:  # the header check already demands 21 octets; this guards direct callers
        raise MessageError(
            ErrorCode.MESSAGE_HEADER,
            HeaderError.BAD_MESSAGE_LENGTH,
            (HEADER_LEN + len(body)).to_bytes(2, "big"),
            "NOTIFICATION shorter than 21 octets",
        )


def decode_notification(body: bytes) -> Notification:
    _check_length(body)
    return Notification(body[0], body[1], body[2:])


def encode_notification(notification: Notification) -> bytes:
    data = notification.data
    if type(data) is bytes:
        try:
            return bytes((notification.code, notification.subcode)) + data
        except (ValueError, TypeError):
            pass
    return encode_notification_spec(notification)  # it raises the error


def decode_notification_spec(body: bytes) -> Notification:
    """The same as `decode_notification`, through the construct specification."""
    from proto.bgp.message_spec import NotificationSpec

    _check_length(body)
    parsed = NotificationSpec.parse(body)
    return Notification(parsed.code, parsed.subcode, parsed.data)


def encode_notification_spec(notification: Notification) -> bytes:
    """The same as `encode_notification`, through the construct specification."""
    from proto.bgp.message_spec import NotificationSpec

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
