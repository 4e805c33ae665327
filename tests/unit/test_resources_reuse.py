"""proto/resources/reuse.py: a reload that reuses unchanged documents gives exactly what reading the
whole text gives (resources, their document numbers and lines, warnings, errors), on generated files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.resources import reuse
from proto.resources.errors import ValidationError
from proto.resources.load import _load_documents, load_resources

ROOT = Path(__file__).resolve().parents[2]


def node(i: int) -> str:
    return (f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: n{i}\n"
            f"spec:\n  bgp:\n    ipv4Address: 10.30.{i}.10/24\n")


def block(i: int, j: int) -> str:
    return (f"apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata:\n  name: b{i}-{j}\n"
            f"spec:\n  node: n{i}\n  cidr: 10.{100 + i}.{j}.0/26\n  state: confirmed\n  deleted: 'false'\n")


POOL = ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\n"
        "spec:\n  cidr: 10.100.0.0/14\n  ipipMode: Always\n  natOutgoing: true\n")
NODE_LIST = ("apiVersion: projectcalico.org/v3\nkind: NodeList\nitems:\n"
             "- metadata:\n    name: listed-a\n  spec:\n    bgp:\n      ipv4Address: 10.40.0.1/24\n"
             "- metadata:\n    name: listed-b\n  spec:\n    bgp:\n      ipv4Address: 10.40.0.2/24\n")
BROKEN_FIELD = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: bad\nspec:\n  cidr: nope\n"
BROKEN_YAML = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: [\n"

documents = st.one_of(
    st.builds(node, st.integers(0, 30)),
    st.builds(block, st.integers(0, 30), st.integers(0, 3)),
    st.just(POOL), st.just(NODE_LIST),
    st.just(""),  # an empty document: numbered, holds nothing
    st.just("# only a comment\n"),
)
gaps = st.sampled_from(["", "\n", "# between\n", "\n\n# two\n\n", "...\n"])


@st.composite
def files(draw: st.DrawFn) -> str:
    docs = draw(st.lists(documents, min_size=1, max_size=8))
    lead = draw(st.sampled_from(["", "---\n", "# head\n---\n", "--- # marked\n"]))
    out = lead + docs[0]
    for doc in docs[1:]:
        out += draw(gaps) + draw(st.sampled_from(["---\n", "--- \n", "---   # c\n"])) + doc
    return out


def whole(text: str, source: str) -> tuple[list[object], list[object], list[object]]:
    got = _load_documents(text, source)
    return list(got.resources), [r.location for r in got.resources], list(got.warnings)


def seen(text: str, source: str) -> tuple[list[object], list[object], list[object]]:
    got = load_resources(text, source)
    return list(got.resources), [r.location for r in got.resources], list(got.warnings)


@settings(max_examples=150, deadline=None)
@given(first=files(), second=files(), third=files())
def test_reloads_give_what_a_whole_read_gives(first: str, second: str, third: str) -> None:
    source = "reuse-test.yaml"
    for text in (first, second, first + "---\n" + second, third, third):  # unrelated, grown, repeated
        try:
            expected = whole(text, source)
        except ValidationError:
            with pytest.raises(ValidationError):
                load_resources(text, source)
            continue
        if _load_documents(text, source).problems:
            with pytest.raises(ValidationError):
                load_resources(text, source)
            continue
        assert seen(text, source) == expected


def test_a_changed_document_is_read_again_and_the_others_are_not() -> None:
    text = "".join(("---\n" if i else "") + node(i) for i in range(20))
    first = load_resources(text, "one-change.yaml").resources
    edited = text.replace("10.30.7.10/24", "10.30.7.11/24")
    again = load_resources(edited, "one-change.yaml").resources
    assert [a is b for a, b in zip(first, again, strict=True)].count(False) == 1  # only n7 is new
    assert str(again[7].ipv4_address) == "10.30.7.11/24"  # type: ignore[attr-defined]


def test_documents_after_an_inserted_one_move_to_their_new_numbers_and_lines() -> None:
    docs = [node(i) for i in range(5)]
    load_resources("---\n".join(docs), "moved.yaml")
    grown = "---\n".join([docs[0], block(0, 0), *docs[1:]])
    got = load_resources(grown, "moved.yaml").resources
    expected = _load_documents(grown, "moved.yaml").resources
    assert [r.location for r in got] == [r.location for r in expected]
    assert got[2].location is not None and got[2].location.document == 3
    assert got[2].location.lines["spec.bgp.ipv4Address"] == expected[2].location.lines["spec.bgp.ipv4Address"]  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [BROKEN_FIELD, BROKEN_YAML])
def test_an_error_in_any_document_is_reported_as_a_whole_read_reports_it(bad: str) -> None:
    good = "---\n".join(node(i) for i in range(4))
    load_resources(good, "errors.yaml")
    text = good + "---\n" + bad
    with pytest.raises(ValidationError) as direct:
        problems = _load_documents(text, "errors.yaml").problems
        raise ValidationError(list(problems))
    with pytest.raises(ValidationError) as reused:
        load_resources(text, "errors.yaml")
    assert [str(p) for p in reused.value.problems] == [str(p) for p in direct.value.problems]
    assert all(p.document in (5, None) and p.line is not None and p.line > 30 for p in reused.value.problems)


def test_directives_are_never_cut() -> None:
    assert reuse.split("%YAML 1.1\n---\na: 1\n") is None
    assert reuse.split("a: 1\n---\nb: |\n  text\n  --- not a marker when indented\n") == [
        (0, "a: 1\n"), (1, "---\nb: |\n  text\n  --- not a marker when indented\n")]
    assert reuse.split("a: 1\n----\nb: 2\n---x\n") == [(0, "a: 1\n----\nb: 2\n---x\n")]


def test_a_reload_of_a_big_file_reads_only_what_changed() -> None:
    text = "".join(("---\n" if i else "") + node(i % 250) .replace(f"name: n{i % 250}", f"name: m{i}")
                   for i in range(400))
    t0 = time.process_time()
    _load_documents(text, "big.yaml")
    whole_cpu = time.process_time() - t0
    load_resources(text, "big.yaml")
    t0 = time.process_time()
    load_resources(text.replace("name: m399", "name: m399x"), "big.yaml")
    reload_cpu = time.process_time() - t0
    assert reload_cpu < whole_cpu / 3, (reload_cpu, whole_cpu)
