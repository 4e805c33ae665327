"""Calico's selector grammar: parse, evaluate, errors, and render/parse round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.selector import SelectorError, parse_selector

LABELS = {"role": "rr", "rack": "a", "zone": "eu-west-1", "kubernetes.io/hostname": "worker-1"}


@pytest.mark.parametrize(("text", "expected"), [
    ("all()", True),
    ("", True),
    ("global()", True),
    ("has(role)", True),
    ("has(missing)", False),
    ("!has(role)", False),
    ("!has(missing)", True),
    ("role == 'rr'", True),
    ('role == "rr"', True),
    ("role == 'client'", False),
    ("missing == 'x'", False),
    ("role != 'client'", True),
    ("role != 'rr'", False),
    ("missing != 'x'", True),  # Calico: != also matches resources without the label
    ("rack in {'a', 'b'}", True),
    ("rack in {'b'}", False),
    ("rack in {}", False),
    ("missing in {'a'}", False),
    ("rack not in {'b', 'c'}", True),
    ("rack not in {'a'}", False),
    ("missing not in {'a'}", True),
    ("zone contains 'west'", True),
    ("zone starts with 'eu-'", True),
    ("zone ends with '-1'", True),
    ("zone ends with '-2'", False),
    ("kubernetes.io/hostname == 'worker-1'", True),
    ("role == 'rr' && rack == 'a'", True),
    ("role == 'rr' && rack == 'b'", False),
    ("role == 'x' || rack == 'a'", True),
    ("role == 'x' || rack == 'b'", False),
    ("!(role == 'rr')", False),
    ("!!has(role)", True),
    # && binds tighter than ||
    ("role == 'x' && rack == 'a' || has(zone)", True),
    ("role == 'x' && (rack == 'a' || has(zone))", False),
    ("(has(role) || has(x)) && !(rack in {'b'})", True),
])
def test_evaluate(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize(("text", "column", "fragment"), [
    ("has(role", 9, "expected ')'"),
    ("role ==", 8, "a quoted string"),
    ("role == rr", 9, "a quoted string"),
    ("role = 'rr'", 6, "unexpected character '='"),
    ("role == 'rr", 9, "unterminated string"),
    ("role in {'a' 'b'}", 14, "expected '}'"),
    ("role not {'a'}", 10, "'in' after 'not'"),
    ("role", 5, "an operator after label 'role'"),
    ("has(role) has(x)", 11, "'&&', '||' or end"),
    ("&& has(x)", 1, "a label name"),
    ("(has(x)", 8, "expected ')'"),
    ("zone starts 'x'", 13, "'with' after 'starts'"),
    ("all(", 5, "expected ')'"),
])
def test_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert info.value.column + 1 == column
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


def test_selector_is_a_value() -> None:
    a = parse_selector("role == 'rr'")
    assert a == parse_selector("role=='rr'")
    assert hash(a) == hash(parse_selector("role  ==  'rr'"))
    assert a != parse_selector("role == 'x'")
    assert str(a) == "role == 'rr'"
    assert parse_selector("").source == "all()"
    assert parse_selector("all()").selects_all and not a.selects_all


# --- property: rendering a tree and parsing it back gives the same selector and the same answers ---

_keys = st.sampled_from(["role", "rack", "zone", "a.b/c", "x-1"])
_values = st.sampled_from(["rr", "a", "b", "it's", "", "eu-west-1"])


def _quote(v: str) -> str:
    return f'"{v}"' if "'" in v else f"'{v}'"


_atoms = st.one_of(
    st.just("all()"),
    _keys.map(lambda k: f"has({k})"),
    st.tuples(_keys, st.sampled_from(["==", "!=", "contains", "starts with", "ends with"]), _values)
      .map(lambda t: f"{t[0]} {t[1]} {_quote(t[2])}"),
    st.tuples(_keys, st.sampled_from(["in", "not in"]), st.lists(_values, max_size=3))
      .map(lambda t: f"{t[0]} {t[1]} {{{', '.join(map(_quote, t[2]))}}}"),
)
_exprs = st.recursive(_atoms, lambda inner: st.one_of(
    inner.map(lambda e: f"!({e})"),
    st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
), max_leaves=8)
_label_sets = st.dictionaries(_keys, _values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(_exprs, _label_sets)
def test_render_parse_round_trip(text: str, labels: dict[str, str]) -> None:
    sel = parse_selector(text)
    again = parse_selector(sel.canonical)
    assert again.canonical == sel.canonical
    assert again.matches(labels) == sel.matches(labels)


@settings(max_examples=100, deadline=None)
@given(_exprs, _exprs, _label_sets)
def test_boolean_algebra(a: str, b: str, labels: dict[str, str]) -> None:
    x, y = parse_selector(a).matches(labels), parse_selector(b).matches(labels)
    assert parse_selector(f"({a}) && ({b})").matches(labels) == (x and y)
    assert parse_selector(f"({a}) || ({b})").matches(labels) == (x or y)
    assert parse_selector(f"!({a})").matches(labels) == (not x)
