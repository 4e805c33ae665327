"""Comparing a hand-written codec with its construct specification: outcomes that compare equal when both
paths agree (the value, or the error's identity), and a guard that the fast encoder never asked the spec."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

from proto.bgp import MessageError


def decoded(decode: Any, body: bytes) -> Any:
    """("ok", value), or ("error", code, subcode, data) for the NOTIFICATION it raised."""
    try:
        return ("ok", decode(body))
    except MessageError as error:
        return ("error", error.code, error.subcode, error.data)


def encoded(encode: Any, value: Any) -> Any:
    """("ok", bytes), or ("raised", type, text) for an out-of-range value."""
    try:
        return ("ok", encode(value))
    except Exception as error:  # out of range: construct's error, whichever path asked
        return ("raised", type(error), str(error))


@contextlib.contextmanager
def spec_refused(*targets: tuple[object, str]) -> Iterator[None]:
    """Within the block, every (module, name) given fails if called; afterwards, check none was."""
    refuse = mock.Mock(side_effect=AssertionError("the specification was asked"))
    with contextlib.ExitStack() as stack:
        for module, name in targets:
            stack.enter_context(mock.patch.object(module, name, refuse))
        yield
    refuse.assert_not_called()
