"""Calico's label selector language: a tokenizer, a recursive-descent parser and an evaluator.

Grammar (Calico's, as documented for `nodeSelector` / `peerSelector` / policy selectors):

    expr     := and_expr ( '||' and_expr )*
    and_expr := unary ( '&&' unary )*
    unary    := '!' unary | primary
    primary  := '(' expr ')' | 'all()' | 'global()' | 'has(' key ')'
              | key '==' str | key '!=' str | key 'in' set | key 'not' 'in' set
              | key 'contains' str | key 'starts' 'with' str | key 'ends' 'with' str
    set      := '{' [ str ( ',' str )* ] '}'

Strings are single- or double-quoted. `!=` and `not in` match resources without the label too, as in
Calico. `global()` selects non-namespaced resources in Calico; every resource tortie selects (Nodes) is
non-namespaced, so it matches everything here. The empty selector means `all()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ALL", "Selector", "SelectorError", "parse_selector"]


class SelectorError(ValueError):
    """A selector that does not parse; the message quotes the selector and the column."""

    def __init__(self, message: str, source: str, column: int) -> None:
        super().__init__(f"{message} at column {column + 1} in selector {source!r}")
        self.reason = message
        self.source = source
        self.column = column


# --- tokens -------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op>&&|\|\||==|!=|!|\(|\)|\{|\}|,)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<ident>[A-Za-z0-9_./-]+)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "op", "str", "ident", "end"
    text: str
    pos: int

    @property
    def value(self) -> str:
        return self.text[1:-1] if self.kind == "str" else self.text


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN_RE.match(source, pos)
        if m is None:
            ch = source[pos]
            if ch in "'\"":
                raise SelectorError("unterminated string", source, pos)
            raise SelectorError(f"unexpected character {ch!r}", source, pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


# --- syntax tree --------------------------------------------------------------------------------

class _Expr:
    def matches(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError


def _quote(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


@dataclass(frozen=True, slots=True)
class _All(_Expr):
    name: str = "all"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def render(self) -> str:
        return f"{self.name}()"


@dataclass(frozen=True, slots=True)
class _Has(_Expr):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def render(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True, slots=True)
class _Compare(_Expr):
    key: str
    op: str  # "==", "!=", "contains", "starts with", "ends with"
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        if self.op == "!=":
            return actual != self.value
        if actual is None:
            return False
        if self.op == "==":
            return actual == self.value
        if self.op == "contains":
            return self.value in actual
        if self.op == "starts with":
            return actual.startswith(self.value)
        return actual.endswith(self.value)

    def render(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class _In(_Expr):
    key: str
    values: frozenset[str]
    negated: bool

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        if self.negated:
            return actual is None or actual not in self.values
        return actual is not None and actual in self.values

    def render(self) -> str:
        items = ", ".join(_quote(v) for v in sorted(self.values))
        return f"{self.key} {'not in' if self.negated else 'in'} {{{items}}}"


@dataclass(frozen=True, slots=True)
class _Not(_Expr):
    operand: _Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def render(self) -> str:
        inner = self.operand.render()
        if isinstance(self.operand, _Has):
            return f"!{inner}"
        return f"!({inner})"


@dataclass(frozen=True, slots=True)
class _BoolOp(_Expr):
    op: str  # "&&" or "||"
    operands: tuple[_Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "&&":
            return all(o.matches(labels) for o in self.operands)
        return any(o.matches(labels) for o in self.operands)

    def render(self) -> str:
        return f" {self.op} ".join(
            f"({o.render()})" if isinstance(o, _BoolOp) else o.render() for o in self.operands)


# --- parser -------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _fail(self, what: str, tok: _Token | None = None) -> SelectorError:
        tok = tok or self.tok
        found = "end of selector" if tok.kind == "end" else repr(tok.text)
        return SelectorError(f"expected {what}, found {found}", self.source, tok.pos)

    def _accept_op(self, text: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == text:
            self.i += 1
            return True
        return False

    def _expect_op(self, text: str) -> None:
        if not self._accept_op(text):
            raise self._fail(f"'{text}'")

    def _accept_word(self, word: str) -> bool:
        if self.tok.kind == "ident" and self.tok.text == word:
            self.i += 1
            return True
        return False

    def _string(self) -> str:
        if self.tok.kind != "str":
            raise self._fail("a quoted string")
        value = self.tok.value
        self.i += 1
        return value

    def parse(self) -> _Expr:
        if self.tok.kind == "end":
            return _All()
        expr = self._or()
        if self.tok.kind != "end":
            raise self._fail("'&&', '||' or end of selector")
        return expr

    def _or(self) -> _Expr:
        operands = [self._and()]
        while self._accept_op("||"):
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else _BoolOp("||", tuple(operands))

    def _and(self) -> _Expr:
        operands = [self._unary()]
        while self._accept_op("&&"):
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else _BoolOp("&&", tuple(operands))

    def _unary(self) -> _Expr:
        if self._accept_op("!"):
            return _Not(self._unary())
        return self._primary()

    def _primary(self) -> _Expr:
        if self._accept_op("("):
            expr = self._or()
            self._expect_op(")")
            return expr
        tok = self.tok
        if tok.kind != "ident":
            raise self._fail("a label name, 'has(', 'all()', '!' or '('")
        nxt = self.tokens[self.i + 1]
        if tok.text in ("all", "global", "has") and nxt.kind == "op" and nxt.text == "(":
            self.i += 2
            if tok.text == "has":
                if self.tok.kind != "ident":
                    raise self._fail("a label name")
                key = self.tok.text
                self.i += 1
                self._expect_op(")")
                return _Has(key)
            self._expect_op(")")
            return _All(tok.text)
        key = tok.text
        self.i += 1
        return self._comparison(key)

    def _comparison(self, key: str) -> _Expr:
        if self._accept_op("=="):
            return _Compare(key, "==", self._string())
        if self._accept_op("!="):
            return _Compare(key, "!=", self._string())
        if self._accept_word("in"):
            return _In(key, self._set(), negated=False)
        if self._accept_word("not"):
            if not self._accept_word("in"):
                raise self._fail("'in' after 'not'")
            return _In(key, self._set(), negated=True)
        if self._accept_word("contains"):
            return _Compare(key, "contains", self._string())
        for word in ("starts", "ends"):
            if self._accept_word(word):
                if not self._accept_word("with"):
                    raise self._fail(f"'with' after '{word}'")
                return _Compare(key, f"{word} with", self._string())
        raise self._fail(f"an operator after label {key!r} (==, !=, in, not in, contains, starts with, "
                         "ends with)")

    def _set(self) -> frozenset[str]:
        self._expect_op("{")
        values: list[str] = []
        if not self._accept_op("}"):
            values.append(self._string())
            while self._accept_op(","):
                values.append(self._string())
            self._expect_op("}")
        return frozenset(values)


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector. Equal selectors have the same canonical form; `source` is what the user wrote."""

    source: str = field(compare=False)
    _expr: _Expr = field(repr=False, compare=False)
    canonical: str = field(repr=False)  # the identity of the selector

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self._expr.matches(labels)

    @property
    def selects_all(self) -> bool:
        return isinstance(self._expr, _All)

    def __str__(self) -> str:
        return self.source


def parse_selector(source: str) -> Selector:
    """Parse Calico selector syntax; raises SelectorError naming the column of the problem."""
    expr = _Parser(source).parse()
    return Selector(source=source.strip() or "all()", _expr=expr, canonical=expr.render())


ALL = parse_selector("all()")
