"""What a target may do with any input: the documented outcomes, and nothing else.

Anything a check function raises other than `Rejected` is a finding: an undocumented exception
escaping the code under test, or an `Finding` raised by a check when the outcome was one of the
documented kinds but wrong (a NOTIFICATION code that does not exist, a decode-encode-decode round
trip that changes the value, a deadline in the past).
"""

from __future__ import annotations

# NOTIFICATION (code -> allowed subcodes) from IANA's "BGP Error (Notification) Codes" and
# "BGP Error Subcodes" registries (RFC 4271, 4486, 5492, 7313, 8203/9003, 9234). Written here from
# the registries, not taken from proto.bgp, so the oracle does not share the codec's mistakes.
# Deprecated subcodes (OPEN 5, 8, 9, 10; UPDATE 7) are not expected from a current speaker.
VALID_NOTIFICATIONS: dict[int, frozenset[int]] = {
    1: frozenset({1, 2, 3}),  # Message Header Error
    2: frozenset({0, 1, 2, 3, 4, 6, 7, 11}),  # OPEN Message Error
    3: frozenset({0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11}),  # UPDATE Message Error
    4: frozenset({0}),  # Hold Timer Expired
    5: frozenset({0, 1, 2, 3}),  # Finite State Machine Error (RFC 6608)
    6: frozenset(range(0, 11)),  # Cease (RFC 4486, RFC 8538 hard reset, RFC 9384 BFD down)
    7: frozenset({0, 1}),  # ROUTE-REFRESH Message Error (RFC 7313)
}


class Finding(AssertionError):
    """A documented kind of outcome with a wrong value: the code under test is wrong."""


class Rejected(Exception):
    """The target's own pre-condition was not met (e.g. the fuzzer's bytes are not UTF-8 where the
    real reader would not pass them on either): not a finding, just an input not worth running."""


def check_notification(code: int, subcode: int, data: object, where: str) -> None:
    if not isinstance(code, int) or code not in VALID_NOTIFICATIONS:
        raise Finding(f"{where}: NOTIFICATION code {code!r} does not exist")
    if not isinstance(subcode, int) or subcode not in VALID_NOTIFICATIONS[code]:
        raise Finding(f"{where}: NOTIFICATION {code}/{subcode!r}: no such subcode")
    if not isinstance(data, bytes):
        raise Finding(f"{where}: NOTIFICATION data is {type(data).__name__}, not bytes")
