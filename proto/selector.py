"""Calico's label selector language: a tokenizer, a recursive-descent parser and an evaluator.

The grammar and its corner cases follow Calico's own tokenizer and parser (libcalico-go
`lib/selector/tokenizer/tokenizer.go` and `lib/selector/parser/parser.go`, release v3.32):

    expr      := and_expr ( '||' and_expr )*              '||' binds loosest
    and_expr  := operation ( '&&' operation )*
    operation := '!'* ( '(' expr ')' | 'all()' | 'global()' | 'has(' label ')'
                      | label op string | label ( 'in' | 'not in' ) set )
    op        := '==' | '!=' | 'contains' | 'starts with' | 'ends with'
    set       := '{' [ string ( ',' string )* [ ',' ] ] '}'

- The multi-word operators may be written as one word: `startswith`, `endswith`, `notin`; they need
  a word boundary after them (`inx` is not `in`). Operators are recognised only right after a label.
- `has(`, `all(` and `global(` are written without a space before `(`; `has ( x )` is a label `has`
  followed by `(`, an error. Spaces are allowed inside the parentheses.
- Whitespace is spaces and tabs only. Labels are letters, digits, `_`, `.`, `/`, `-`, at most 512
  characters. Strings take single or double quotes and have no escapes.
- Leading `!`s collapse (`!!has(a)` is `has(a)`); a `!` binds to one operation.
- `!=` and `not in` match resources without the label too; `==`, `in`, `contains`, `starts with`
  and `ends with` need the label. `global()` matches everything (every resource tortie selects is
  non-namespaced); where Calico refuses `global()` (an IPPool's nodeSelector) the resource says so.
- The empty selector (or only whitespace) means `all()`. A set may be empty and may end with a comma.

Errors use Calico's words and add the column: `no closing ')' after has( at column 9 in selector
'has(role'`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from proto.record import record

__all__ = ["ALL", "MAX_LABEL_LENGTH", "Selector", "SelectorError", "parse_selector"]

MAX_LABEL_LENGTH = 512  # Calico's tokenizer.MaxLabelLength


class SelectorError(ValueError):
    """A selector that does not parse; the message quotes the selector and the column."""

    def __init__(self, message: str, source: str, column: int) -> None:
        super().__init__(f"{message} at column {column + 1} in selector {source!r}")
        self.reason = message
        self.source = source
        self.column = column


# --- tokens -------------------------------------------------------------------------------------

(LABEL, STRING, LBRACE, RBRACE, COMMA, EQ, NE, IN, NOT, NOTIN, CONTAINS, STARTSWITH, ENDSWITH, ALLF, HAS,
 LPAREN, RPAREN, AND, OR, GLOBALF, EOF) = (
    "label", "string", "'{'", "'}'", "','", "'=='", "'!='", "'in'", "'!'", "'not in'", "'contains'",
    "'starts with'", "'ends with'", "'all()'", "'has()'", "'('", "')'", "'&&'", "'||'", "'global()'",
    "end of selector")

_SIMPLE = {"(": LPAREN, ")": RPAREN, "{": LBRACE, "}": RBRACE, ",": COMMA}
_OPERATOR_WORDS = ((CONTAINS, ("contains",)), (STARTSWITH, ("starts", "with")), (ENDSWITH, ("ends", "with")),
                   (NOTIN, ("not", "in")), (IN, ("in",)))


@record(frozen=True, slots=True)
class _Token:
    kind: str
    value: str
    pos: int


def _ident_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in "_./-")


def _skip_ws(src: str, pos: int) -> int:
    while pos < len(src) and src[pos] in " \t":
        pos += 1
    return pos


def _identifier(src: str, pos: int) -> tuple[str, int]:
    end = pos
    while end < len(src) and _ident_char(src[end]):
        end += 1
    ident = src[pos:end]
    if not ident:
        raise SelectorError("expected identifier", src, pos)
    if len(ident) > MAX_LABEL_LENGTH:
        raise SelectorError(f"label too long: {ident[:20]}... ({len(ident)} characters, at most "
                            f"{MAX_LABEL_LENGTH})", src, pos)
    return ident, end


def _operator_word(src: str, pos: int, words: tuple[str, ...]) -> int | None:
    """End of `words` at pos (spaces allowed between them, none needed), if a word boundary follows."""
    at = pos
    for word in words:
        if not src.startswith(word, at):
            return None
        at = _skip_ws(src, at + len(word))
    end = at
    # only the last word needs a boundary after it ("notin" is "not in")
    last_end = end
    while last_end > pos and src[last_end - 1] in " \t":
        last_end -= 1
    if last_end < len(src) and _ident_char(src[last_end]):
        return None
    return last_end


def _tokenize(src: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        pos = _skip_ws(src, pos)
        if pos >= len(src):
            tokens.append(_Token(EOF, "", len(src)))
            return tokens
        c = src[pos]
        last = tokens[-1].kind if tokens else None
        if c in _SIMPLE:
            tokens.append(_Token(_SIMPLE[c], c, pos))
            pos += 1
        elif c in "'\"":
            end = src.find(c, pos + 1)
            if end < 0:
                raise SelectorError("unterminated string", src, pos)
            tokens.append(_Token(STRING, src[pos + 1:end], pos))
            pos = end + 1
        elif c == "=":
            if not src.startswith("==", pos):
                raise SelectorError("expected ==", src, pos)
            tokens.append(_Token(EQ, "==", pos))
            pos += 2
        elif c == "!":
            if src.startswith("!=", pos):
                tokens.append(_Token(NE, "!=", pos))
                pos += 2
            else:
                tokens.append(_Token(NOT, "!", pos))
                pos += 1
        elif c in "&|":
            if not src.startswith(c * 2, pos):
                raise SelectorError(f"expected {c * 2}", src, pos)
            tokens.append(_Token(AND if c == "&" else OR, c * 2, pos))
            pos += 2
        elif last == LABEL:
            for kind, words in _OPERATOR_WORDS:
                end = _operator_word(src, pos, words)
                if end is not None:
                    tokens.append(_Token(kind, src[pos:end], pos))
                    pos = end
                    break
            else:
                raise SelectorError(f"expected operator after label {tokens[-1].value!r} (==, !=, in, not in, "
                                    "contains, starts with, ends with)", src, pos)
        elif src.startswith("has(", pos):
            start = pos
            ident, pos = _identifier(src, _skip_ws(src, pos + 4))
            pos = _skip_ws(src, pos)
            if not src.startswith(")", pos):
                raise SelectorError("no closing ')' after has(", src, pos)
            tokens.append(_Token(HAS, ident, start))
            pos += 1
        elif src.startswith("all(", pos) or src.startswith("global(", pos):
            word = "all" if src.startswith("all(", pos) else "global"
            start = pos
            pos = _skip_ws(src, pos + len(word) + 1)
            if not src.startswith(")", pos):
                raise SelectorError(f"no closing ')' after {word}(", src, pos)
            tokens.append(_Token(ALLF if word == "all" else GLOBALF, word + "()", start))
            pos += 1
        else:
            ident, end = _identifier(src, pos)
            tokens.append(_Token(LABEL, ident, pos))
            pos = end


# --- syntax tree --------------------------------------------------------------------------------

def _quote(value: str) -> str:
    # Calico's canonical form: double quotes unless the value holds one
    return f"'{value}'" if '"' in value else f'"{value}"'


class _Expr:
    __slots__ = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError


@record(frozen=True, slots=True)
class _All(_Expr):
    name: str = "all"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def render(self) -> str:
        return f"{self.name}()"


@record(frozen=True, slots=True)
class _Has(_Expr):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def render(self) -> str:
        return f"has({self.key})"


@record(frozen=True, slots=True)
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


@record(frozen=True, slots=True)
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


@record(frozen=True, slots=True)
class _Not(_Expr):
    operand: _Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def render(self) -> str:
        return f"!{self.operand.render()}"


@record(frozen=True, slots=True)
class _BoolOp(_Expr):
    op: str  # "&&" or "||"
    operands: tuple[_Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "&&":
            return all(o.matches(labels) for o in self.operands)
        return any(o.matches(labels) for o in self.operands)

    def render(self) -> str:
        # as Calico: every && and || group is parenthesised, so `!` always applies to one operand
        return "(" + f" {self.op} ".join(o.render() for o in self.operands) + ")"


# --- parser -------------------------------------------------------------------------------------

# Parentheses nest by recursion here, and the parsed expression by recursion in matching and
# rendering: bounded well inside Python's recursion limit (a real selector nests two or three deep).
# The canonical form nests no deeper than the text it came from, so it always parses again.
MAX_DEPTH = 64


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _fail(self, message: str, tok: _Token | None = None) -> SelectorError:
        tok = tok or self.tok
        return SelectorError(message, self.source, tok.pos)

    def parse(self) -> _Expr:
        if self.tok.kind == EOF:
            return _All()
        expr = self._or()
        if self.tok.kind != EOF:
            raise self._fail(f"unexpected content at end of selector: {self.tok.kind}")
        return expr

    def _or(self) -> _Expr:
        operands = [self._and()]
        while self.tok.kind == OR:
            self.i += 1
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else _BoolOp("||", tuple(operands))

    def _and(self) -> _Expr:
        operands = [self._operation()]
        while self.tok.kind == AND:
            self.i += 1
            operands.append(self._operation())
        return operands[0] if len(operands) == 1 else _BoolOp("&&", tuple(operands))

    def _operation(self) -> _Expr:
        negated = False
        while self.tok.kind == NOT:
            negated = not negated
            self.i += 1
        tok = self.tok
        expr: _Expr
        if tok.kind == HAS:
            expr = _Has(tok.value)
            self.i += 1
        elif tok.kind in (ALLF, GLOBALF):
            expr = _All("all" if tok.kind == ALLF else "global")
            self.i += 1
        elif tok.kind == LABEL:
            self.i += 1
            expr = self._comparison(tok.value)
        elif tok.kind == LPAREN:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self._fail(f"parentheses nested more than {MAX_DEPTH} deep")
            self.i += 1
            expr = self._or()
            if self.tok.kind != RPAREN:
                raise self._fail(f"expected ), found {self.tok.kind}")
            self.i += 1
            self.depth -= 1
        elif tok.kind == EOF:
            raise self._fail("unexpected end of string looking for op")
        else:
            raise self._fail(f"unexpected token: {tok.kind} (expected a label, has(), all(), '!' or '(')")
        if not negated:
            return expr
        # `!(!x)` is x: collapsing here keeps the canonical form a fixed point of parsing
        return expr.operand if isinstance(expr, _Not) else _Not(expr)

    def _comparison(self, key: str) -> _Expr:
        op = self.tok
        if op.kind == EOF:
            raise self._fail("unexpected end of string looking for op")
        self.i += 1
        if op.kind in (IN, NOTIN):
            if self.tok.kind != LBRACE:
                raise self._fail(f"expected set literal, found {self.tok.kind}")
            self.i += 1
            values: list[str] = []
            while self.tok.kind == STRING:
                values.append(self.tok.value)
                self.i += 1
                if self.tok.kind != COMMA:
                    break
                self.i += 1
            if self.tok.kind != RBRACE:
                raise self._fail(f"expected }}, found {self.tok.kind}")
            self.i += 1
            return _In(key, frozenset(values), negated=op.kind == NOTIN)
        names = {EQ: "==", NE: "!=", CONTAINS: "contains", STARTSWITH: "starts with", ENDSWITH: "ends with"}
        if op.kind not in names:
            raise self._fail(f"expected == or != not: {op.kind}", op)
        if self.tok.kind != STRING:
            raise self._fail(f"expected string, found {self.tok.kind}")
        value = self.tok.value
        self.i += 1
        return _Compare(key, names[op.kind], value)


@record(frozen=True, slots=True)
class Selector:
    """A parsed selector. Equal selectors have the same canonical form (Calico's `String()` form);
    `source` is what the user wrote."""

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
