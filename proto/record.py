"""`record`: `dataclasses.dataclass` at a fraction of its start-up cost.

Every daemon and every tortiectl command imports about a hundred dataclasses. On Python 3.11
`dataclass` compiles each generated method with its own `exec` (six for a frozen class, plus an
`inspect.signature` call for a class without a docstring): 0.7 ms and 15 KB per class, 70 ms of the
0.3 s an idle tortie-bgpd spends starting (measured with cProfile and tracemalloc; bench/idle.py).
That start-up cost is paid once per host in production, but fifty times over when a bench or a lab
starts fifty speakers on one machine, and on every tortiectl invocation.

`record` takes the same arguments and gives the class the same behaviour: it lets `dataclass` do the
field processing (so `dataclasses.fields`, `replace`, `asdict`, `__match_args__` and `__slots__`
are dataclasses' own), then adds the methods itself: `__init__`, `__eq__` and `__hash__` compiled
together from one small source text, written as dataclass writes them (they run on hot paths), and
`__repr__` and the frozen `__setattr__` / `__delattr__` as closures shared in shape by every class.
Options it does not reproduce (`order`, `unsafe_hash`, `match_args=False`, `weakref_slot`) fall back
to `dataclass` itself; InitVar fields are refused.

One visible difference: `__dataclass_params__` describes what `dataclass` was asked for (no
generated methods), so a stdlib dataclass must not inherit from a frozen `record` or the reverse;
keep a hierarchy one or the other. tests/unit/test_record.py checks the behaviour against
`dataclass` option by option.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from reprlib import recursive_repr
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

_MISSING = dataclasses.MISSING
_FACTORY = object()  # the default of an __init__ parameter whose field has a default_factory
_dataclass = dataclasses.dataclass


def _methods(cls: type, fields: list[dataclasses.Field[Any]], frozen: bool, slots: bool, init: bool, eq: bool,
             hashed: bool) -> dict[str, Callable[..., Any]]:
    """Those of __init__, __eq__ and __hash__ that are wanted, compiled from one text (dataclass
    compiles each on its own, and start-up pays per compile), written as dataclass writes them:
    equality and hash on tuples of the compared fields, since these run on hot paths."""
    globs: dict[str, Any] = {"__object": object, "__FACTORY": _FACTORY}
    text: list[str] = []
    if init:
        text += _init_text(fields, frozen, slots, globs, hasattr(cls, "__post_init__"))
    compared = "".join(f"self.{f.name}," for f in fields if f.compare)
    if eq:
        text += ["def __eq__(self, other):", "  if other.__class__ is self.__class__:",
                 f"    return ({compared}) == ({compared.replace('self.', 'other.')})", "  return NotImplemented"]
    if hashed:
        text += ["def __hash__(self):", f"  return hash(({compared}))"]
    namespace: dict[str, Any] = {}
    exec("\n".join(text), globs, namespace)  # our own text, built from field names
    for name, fn in namespace.items():
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
    return namespace


def _init_text(fields: list[dataclasses.Field[Any]], frozen: bool, slots: bool, globs: dict[str, Any],
               post_init: bool) -> list[str]:
    params: list[str] = []
    kw_params: list[str] = []
    body: list[str] = []
    seen_default = False
    for f in fields:
        name = f.name
        if name == "self":
            raise TypeError("a record field cannot be named 'self'")
        has_default = f.default is not _MISSING or f.default_factory is not _MISSING
        if f.init:
            if f.default_factory is not _MISSING:
                globs[f"__factory_{name}"] = f.default_factory
                param = f"{name}=__FACTORY"
                value = f"__factory_{name}() if {name} is __FACTORY else {name}"
            elif f.default is not _MISSING:
                globs[f"__default_{name}"] = f.default
                param = f"{name}=__default_{name}"
                value = name
            else:
                param, value = name, name
            if f.kw_only:
                kw_params.append(param)
            else:
                if has_default:
                    seen_default = True
                elif seen_default:
                    raise TypeError(f"non-default argument {name!r} follows default argument")
                params.append(param)
        elif f.default_factory is not _MISSING:
            globs[f"__factory_{name}"] = f.default_factory
            value = f"__factory_{name}()"
        elif f.default is not _MISSING and slots:
            globs[f"__default_{name}"] = f.default
            value = f"__default_{name}"
        else:
            continue  # no value: reading it falls back to the class attribute (or raises, as dataclass's)
        body.append(f"  __object.__setattr__(self, {name!r}, {value})" if frozen else f"  self.{name} = {value}")
    if post_init:
        body.append("  self.__post_init__()")
    signature = ", ".join(["self", *params, *(["*", *kw_params] if kw_params else [])])
    return [f"def __init__({signature}):", *(body or ["  pass"])]


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    @recursive_repr()  # as dataclass: a record that holds itself prints `...` there
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({inner})"
    return __repr__


def _frozen(cls: type, names: frozenset[str]) -> tuple[Callable[..., None], Callable[..., None]]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)  # type: ignore[misc]

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)  # type: ignore[misc]
    return __setattr__, __delattr__


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in dataclasses.fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(dataclasses.fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)


def _build(cls: type, init: bool, repr: bool, eq: bool, frozen: bool, kw_only: bool, slots: bool) -> type:
    own = dict(cls.__dict__)
    class_hash = own.get("__hash__", _MISSING)
    explicit_hash = not (class_hash is _MISSING or (class_hash is None and "__eq__" in own))
    if not own.get("__doc__"):
        cls.__doc__ = cls.__name__  # dataclass would otherwise compute a signature for it
    out: Any = _dataclass(cls, init=False, repr=False, eq=False, frozen=False, kw_only=kw_only, slots=slots)
    every = out.__dataclass_fields__.values()
    if any(f._field_type is dataclasses._FIELD_INITVAR for f in every):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: record does not take InitVar fields; use dataclass")
    fields = [f for f in every if f._field_type is dataclasses._FIELD]  # type: ignore[attr-defined]
    hashed = eq and not explicit_hash and frozen
    made = _methods(out, fields, frozen, slots, init and "__init__" not in own, eq and "__eq__" not in own, hashed)
    for name, fn in made.items():
        setattr(out, name, fn)
    if eq and not explicit_hash and not frozen:
        out.__hash__ = None
    if repr and "__repr__" not in own:
        out.__repr__ = _repr(tuple(f.name for f in fields if f.repr))
    if frozen:
        if "__setattr__" in own or "__delattr__" in own:
            raise TypeError(f"{cls.__name__}: a frozen record cannot define __setattr__ or __delattr__")
        out.__setattr__, out.__delattr__ = _frozen(out, frozenset(f.name for f in fields))
        if slots:
            out.__getstate__ = own.get("__getstate__", _getstate)
            out.__setstate__ = own.get("__setstate__", _setstate)
    if out.__doc__ == cls.__name__ and not own.get("__doc__"):
        out.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields)})"
    return out


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[T] | None = None, /, *, init: bool = True, repr: bool = True, eq: bool = True,
           order: bool = False, unsafe_hash: bool = False, frozen: bool = False, match_args: bool = True,
           kw_only: bool = False, slots: bool = False, weakref_slot: bool = False) -> Any:
    """`@record`, `@record(frozen=True, slots=True)`: as `@dataclass` with the same arguments."""
    def wrap(c: type[T]) -> type[T]:
        if order or unsafe_hash or weakref_slot or not match_args:
            return _dataclass(c, init=init, repr=repr, eq=eq, order=order, unsafe_hash=unsafe_hash, frozen=frozen,
                              match_args=match_args, kw_only=kw_only, slots=slots, weakref_slot=weakref_slot)
        return _build(c, init, repr, eq, frozen, kw_only, slots)  # type: ignore[return-value]
    return wrap if cls is None else wrap(cls)
