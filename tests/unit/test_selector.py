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


# Calico's one-word operators, spacing rules and set literals (libcalico-go selector tokenizer/parser)
@pytest.mark.parametrize(("text", "expected"), [
    ("zone startswith 'eu-'", True),
    ("zone endswith '-1'", True),
    ("rack notin {'b'}", True),
    ("rack not  in {'a'}", False),
    ("zone starts  with 'eu'", True),
    ("rack in{'a'}", True),
    ("rack in {'a',}", True),  # a trailing comma is accepted
    ("has( role )", True),
    ("all( )", True),
    ("\t role=='rr'\t", True),
    ("   ", True),  # only whitespace: all()
    ("!!!has(role)", False),
    ("!role == 'rr' || rack == 'a'", True),  # ! binds to one operation
    ("!(role == 'rr' || rack == 'a')", False),
    ("global() && has(role)", True),
    ("has == 'x'", False),  # 'has' without '(' is a label
    ("allx != 'y'", True),
])
def test_calico_forms(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize(("text", "column", "fragment"), [
    ("has(role", 9, "no closing ')' after has("),
    ("has (role)", 5, "expected == or != not: '('"),
    ("role ==", 8, "expected string, found end of selector"),
    ("role == rr", 9, "expected string, found label"),
    ("role = 'rr'", 6, "expected =="),
    ("role == 'rr", 9, "unterminated string"),
    ("role in {'a' 'b'}", 14, "expected }"),
    ("role in 'a'", 9, "expected set literal"),
    ("role not {'a'}", 6, "expected operator after label 'role'"),
    ("role", 5, "unexpected end of string looking for op"),
    ("has(role) has(x)", 11, "unexpected content at end of selector"),
    ("&& has(x)", 1, "unexpected token: '&&'"),
    ("a & b", 3, "expected &&"),
    ("a | b", 3, "expected ||"),
    ("(has(x)", 8, "expected ), found end of selector"),
    ("zone starts 'x'", 6, "expected operator after label 'zone'"),
    ("zone inx {'a'}", 6, "expected operator after label 'zone'"),
    ("all(", 5, "no closing ')' after all("),
    ("global(x)", 8, "no closing ')' after global("),
    ("has()", 5, "expected identifier"),
    ("role == 'a'\n&& has(x)", 12, "expected identifier"),  # a newline is not whitespace in Calico
    ("# == 'a'", 1, "expected identifier"),
    ("a" * 513 + " == 'x'", 1, "label too long"),
])
def test_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert info.value.column + 1 == column
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


def test_label_of_512_characters_is_allowed() -> None:
    assert parse_selector("a" * 512 + " == 'x'").matches({"a" * 512: "x"})


def test_canonical_form_is_calicos() -> None:
    assert parse_selector("a=='b'&&(c!=\"d\"||has(e))").canonical == '(a == "b" && (c != "d" || has(e)))'
    assert parse_selector("x notin {'b','a'}").canonical == 'x not in {"a", "b"}'
    assert parse_selector("!x startswith 'it\"s'").canonical == "!x starts with 'it\"s'"


def test_selector_is_a_value() -> None:
    a = parse_selector("role == 'rr'")
    assert a == parse_selector("role=='rr'")
    assert hash(a) == hash(parse_selector("role  ==  'rr'"))
    assert a != parse_selector("role == 'x'")
    assert str(a) == "role == 'rr'"  # what the user wrote
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
    st.tuples(_keys, st.sampled_from(["==", "!=", "contains", "starts with", "ends with", "startswith",
                                      "endswith"]), _values)
      .map(lambda t: f"{t[0]} {t[1]} {_quote(t[2])}"),
    st.tuples(_keys, st.sampled_from(["in", "not in", "notin"]), st.lists(_values, max_size=3))
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
