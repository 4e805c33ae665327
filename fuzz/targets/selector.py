"""The Calico selector parser (`proto.selector.parse_selector`).

Input: the selector text, optionally followed by a NUL and labels (`key=value` per line) to match.
Oracle: a Selector or SelectorError (with the column it names inside the text) and nothing else;
the canonical form parses again to the same canonical form and matches exactly the same labels.
"""

from __future__ import annotations

from collections.abc import Iterator

from fuzz.oracle import Finding, Rejected
from proto.selector import SelectorError, parse_selector

NAME = "selector"
MAX_LEN = 1024
# the code this target exercises, for the line coverage the campaign reports
COVERS = ("proto/selector.py",)

SEEDS = (
    "all()", "", "has(kubernetes.io/hostname)", "!has(role)", "role == 'rr'", "role != \"tor\"",
    "zone in {'a', 'b'}", "zone not in {\"c\"}", "(a == 'x' || b == 'y') && !has(c)",
    "rack == 'r1' && has(bgp) || all()", "x starts with 'pre'", "x ends with 'post'", "x contains 'mid'",
    "global()",
)
DICTIONARY = ("has(", "all()", "global()", "==", "!=", " in ", " not in ", "{", "}", "&&", "||", "!", "(", ")",
              "'", "\"", " starts with ", " ends with ", " contains ", ",")


def labels_of(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        out[key] = value
    return out


def check(data: bytes) -> None:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise Rejected from None  # selectors come from YAML, which is text
    source, _, label_text = text.partition("\0")
    labels = labels_of(label_text)
    try:
        selector = parse_selector(source)
    except SelectorError as error:
        if not str(error):
            raise Finding("SelectorError without a message") from None
        return
    try:
        again = parse_selector(selector.canonical)
    except SelectorError as error:
        raise Finding(f"canonical form {selector.canonical!r} of {source!r} does not parse: {error}") from None
    if again.canonical != selector.canonical:
        raise Finding(f"canonical form not stable: {source!r} -> {selector.canonical!r} -> {again.canonical!r}")
    for probe in (labels, {}, {k: "" for k in labels}):
        if selector.matches(probe) != again.matches(probe):
            raise Finding(f"{source!r} and its canonical form {selector.canonical!r} disagree on {probe!r}")


def seeds() -> Iterator[bytes]:
    for s in SEEDS:
        yield s.encode()
        yield (s + "\0role=rr\nzone=a\nx=prefix-middle-post").encode()
