"""Random and mutated cluster files, reproducible by index: `mutated(i)` is always the same bytes.

Mutations of the example files in configs/ at four levels (lines, keys, values, bytes) plus files
made from nothing (random bytes, YAML-ish token soup). `invalid_files(n)` keeps the first n that the
loader refuses (ValidationError) or that are not UTF-8: the abuse tests need files the daemons must
refuse, since a valid file is (rightly) applied.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from proto.resources import ValidationError, load_model

REPO = Path(__file__).resolve().parents[2]

VALUES = ("-1", "0", "65536", "4294967296", "99999999999999999999", "abc", "10.0.0.0/33", "10.0.0.300",
          "fd00::/129", "''", '""', "[]", "{}", "[1, 2]", "{a: b}", "!!binary AAAA", "&anchor x", "*nope", "~",
          "null", "yes", "no", "0x10", "1e9", ".inf", "Always", "Never", "CrossSubnet", "all()", "has(",
          "'unterminated", "\"\\x\"", "2001:db8::1", "10.0.0.1/24", "300s", "-5m", "a" * 300, "é", "\t",
          "!!python/object:os.system x", "<<: *a", "?", "- - -", "%TAG ! x")
KEYS = ("apiVersion", "kind", "metadata", "name", "spec", "labels", "asNumber", "cidr", "blockSize",
        "ipipMode", "vxlanMode", "natOutgoing", "nodeSelector", "peerIP", "node", "bgp", "ipv4Address",
        "items", "maxPrefixes", "password", "unknownField", "spec.extra", "<<", "", "Spec", "NAME")
TOKENS = ("apiVersion: projectcalico.org/v3", "kind: IPPool", "kind: Node", "kind: BGPPeer", "metadata:",
          "  name: x", "spec:", "  cidr: 10.0.0.0/16", "---", "- ", "items:", "{", "}", "[", "]", ": ", "\n",
          "  ", "&a", "*a", "!!str", "#", "'", '"', "...")


@cache
def _seeds() -> tuple[bytes, ...]:
    return tuple(p.read_bytes() for p in sorted((REPO / "configs").glob("*.yaml")))


def _lines(rng: random.Random, text: bytes) -> bytes:
    lines = text.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    op = rng.randrange(5)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[j])
    elif op == 2:
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:
        lines[i] = b" " * rng.choice((1, 3, 5, 8)) + lines[i].lstrip()
    else:
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    return b"\n".join(lines)


def _key(rng: random.Random, text: bytes) -> bytes:
    lines = text.split(b"\n")
    keyed = [k for k, line in enumerate(lines) if b":" in line]
    if not keyed:
        return text
    k = rng.choice(keyed)
    indent = lines[k][: len(lines[k]) - len(lines[k].lstrip())]
    _, _, rest = lines[k].partition(b":")
    lines[k] = indent + rng.choice(KEYS).encode() + b":" + rest
    return b"\n".join(lines)


def _value(rng: random.Random, text: bytes) -> bytes:
    lines = text.split(b"\n")
    keyed = [k for k, line in enumerate(lines) if b": " in line]
    if not keyed:
        return text
    k = rng.choice(keyed)
    head, _, _ = lines[k].partition(b": ")
    lines[k] = head + b": " + rng.choice(VALUES).encode()
    return b"\n".join(lines)


def _bytes(rng: random.Random, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            del data[pos:pos + rng.randint(1, 40)]
        else:
            data = data[:pos]
    return bytes(data)


def _soup(rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    return "".join(rng.choice(TOKENS + VALUES) for _ in range(rng.randint(1, 60))).encode()


def mutated(index: int) -> bytes:
    rng = random.Random(index)
    if rng.random() < 0.1:
        return _soup(rng)
    data = rng.choice(_seeds())
    for _ in range(rng.randint(1, 3)):
        data = rng.choice((_lines, _key, _value, _value, _bytes))(rng, data)
    return data


def refused(data: bytes) -> bool:
    """True when the loader refuses the file (not UTF-8, or a ValidationError)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return True
    try:
        load_model(text, "check.yaml")
    except ValidationError:
        return True
    return False


def invalid_files(count: int) -> Iterator[tuple[int, bytes]]:
    """(index, bytes) of the first `count` mutated files the loader refuses."""
    i = found = 0
    while found < count:
        data = mutated(i)
        if refused(data):
            found += 1
            yield i, data
        i += 1
