"""proto/record.py behaves as dataclasses.dataclass, option by option: each class shape is built twice
(once with each decorator) and the two are compared through the stdlib's own functions."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import re
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from proto.record import record

OPTIONS: list[dict[str, bool]] = [
    {},
    {"frozen": True},
    {"slots": True},
    {"frozen": True, "slots": True},
    {"frozen": True, "kw_only": True},
    {"eq": False},
    {"frozen": True, "slots": True, "eq": False},
    {"repr": False, "slots": True},
]


def _made() -> list[int]:
    return [1]


def shapes(deco: Callable[..., Any], opts: dict[str, bool]) -> dict[str, type]:
    """The same class bodies under `deco(**opts)`; module-level names so pickle finds them."""
    d = deco(**opts)

    @d
    class Empty:
        pass

    @d
    class One:
        a: int

    @d
    class Plain:
        a: int
        b: str = "b"
        c: tuple[int, ...] = (1, 2)

    @d
    class Fields:
        a: int
        hidden: int = dataclasses.field(default=0, repr=False)
        ignored: int = dataclasses.field(default=0, compare=False)
        made: list[int] = dataclasses.field(default_factory=_made, compare=False)
        later: int = dataclasses.field(init=False, default=7)
        later_made: list[int] = dataclasses.field(init=False, default_factory=_made, compare=False)
        kw: int = dataclasses.field(default=3, kw_only=True)
        shared: ClassVar[int] = 5

    @d
    class Post:
        a: int
        double: int = dataclasses.field(init=False, compare=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "double", self.a * 2)

    @d
    class Own:
        """Defines its own repr, eq and hash: kept as they are."""

        a: int

        def __repr__(self) -> str:
            return "own"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Own)

        def __hash__(self) -> int:
            return 42

    @d
    class Base:
        a: int
        b: int = 2

    @d
    class Child(Base):
        c: int = 3

    return {c.__name__: c for c in (Empty, One, Plain, Fields, Post, Own, Base, Child)}


ARGS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "Empty": ((), {}), "One": ((1,), {}), "Plain": ((1,), {"c": (3,)}), "Fields": ((1, 2, 3), {"kw": 9}),
    "Post": ((4,), {}), "Own": ((1,), {}), "Base": ((1,), {}), "Child": ((1, 5), {"c": 6}),
}


def describe(obj: Any) -> dict[str, Any]:
    """What a user of the class can observe, stated with dataclasses' functions."""
    cls = type(obj)
    seen: dict[str, Any] = {
        "fields": [(f.name, f.init, f.repr, f.compare, f.kw_only, f.default) for f in dataclasses.fields(obj)],
        "asdict": dataclasses.asdict(obj),
        "match_args": getattr(cls, "__match_args__", None),
        "slots": getattr(cls, "__slots__", None),
        "signature": [(p.name, p.kind, p.default is inspect.Parameter.empty)
                      for p in inspect.signature(cls).parameters.values()],
        "repr": re.sub(r" at 0x[0-9a-f]+", "", repr(obj).replace(cls.__qualname__, "X")),
        "hashable": cls.__hash__ is not None,
        "eq_self": obj == copy.copy(obj),
    }
    if cls.__hash__ is not None and "Own" not in cls.__name__:
        seen["hash_equal_on_equal"] = hash(obj) == hash(copy.copy(obj))
    return seen


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_a_record_behaves_as_the_dataclass_with_the_same_options(opts: dict[str, bool]) -> None:
    ours, theirs = shapes(record, opts), shapes(dataclasses.dataclass, opts)
    for name, (args, kwargs) in ARGS.items():
        if opts.get("kw_only"):
            names = [p for p in inspect.signature(theirs[name]).parameters]
            kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
            args = ()
        a, b = ours[name](*args, **kwargs), theirs[name](*args, **kwargs)
        assert describe(a) == describe(b), (name, opts)
        # equality and its inverse: a changed compared field makes them differ, an ignored one does not
        if dataclasses.fields(a) and opts.get("eq", True) and name != "Own":
            first = dataclasses.fields(a)[0].name
            assert (dataclasses.replace(a, **{first: 100}) == a) == (dataclasses.replace(b, **{first: 100}) == b)
        if name == "Fields":
            assert (dataclasses.replace(a, ignored=50) == a) == (dataclasses.replace(b, ignored=50) == b)
            assert a.made is not ours[name](*args, **kwargs).made  # a fresh default per instance
            assert a.later == 7 and a.later_made == [1]
        if name == "Post":
            assert a.double == b.double == 8
        for target in (a, b):
            if opts.get("frozen") and dataclasses.fields(target):
                with pytest.raises(dataclasses.FrozenInstanceError):
                    setattr(target, dataclasses.fields(target)[0].name, 0)
                with pytest.raises(dataclasses.FrozenInstanceError):
                    delattr(target, dataclasses.fields(target)[0].name)
        assert describe(copy.deepcopy(a)) == describe(a)


def test_frozen_slotted_records_pickle_and_copy() -> None:
    obj = Pickled(1, "x")
    assert pickle.loads(pickle.dumps(obj)) == obj
    assert copy.copy(obj) == obj and copy.deepcopy(obj) == obj
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.a = 2  # type: ignore[misc]


def test_a_record_that_holds_itself_prints_as_a_dataclass_does() -> None:
    ours, theirs = shapes(record, {}), shapes(dataclasses.dataclass, {})
    a, b = ours["One"]([]), theirs["One"]([])
    a.a.append(a)
    b.a.append(b)
    assert repr(a) == repr(b) == "shapes.<locals>.One(a=[...])"


def test_wrong_field_order_is_refused_as_dataclass_refuses_it() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        @record
        class Bad:
            a: int = 1
            b: int  # type: ignore[misc]


def test_options_it_does_not_reproduce_fall_back_to_dataclass() -> None:
    @record(order=True, frozen=True)
    class Ordered:
        a: int

    assert Ordered(1) < Ordered(2)


def test_unsafe_mixing_is_not_silent_for_initvar() -> None:
    with pytest.raises(TypeError, match="InitVar"):
        @record
        class WithInitVar:
            a: int
            b: dataclasses.InitVar[int]


@record(frozen=True, slots=True)
class Pickled:
    a: int
    b: str
