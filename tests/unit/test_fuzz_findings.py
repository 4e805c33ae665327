"""Regression tests for what fuzzing and the soak tier's abused cluster files found (docs/reliability.md,
"Findings"), and a check that every fuzz target's seeds pass its oracle (the harness itself works).

Each finding: the input (minimised) and the documented outcome it must now have.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from ctl.__main__ import main as tortiectl
from datastore import FileDatastore
from fuzz.targets import TARGETS, load
from proto.resources import ValidationError, load_model
from proto.selector import MAX_DEPTH, SelectorError, parse_selector

REPO = Path(__file__).resolve().parents[2]
POOL = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: 10.0.0.0/16\n"


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ValidationError) as caught:
        load_model(text, "f.yaml")
    return [(p.line, p.path, p.message) for p in caught.value.problems]


# ---------------------------------------------------------------- finding 1 (soak: mutated files)
# A YAML tag the safe loader has no constructor for, or a value its tag cannot hold, escaped the loader
# as yaml.ConstructorError / ValueError / KeyError: `tortiectl apply` crashed with a traceback, the
# daemons' file watch logged an exception and reported nothing.


@pytest.mark.parametrize(("value", "says"), [
    ("!!python/object:os.system x", "could not determine a constructor"),
    ("!!python/name:os.system x", "could not determine a constructor"),
    ("!!int abc", "invalid literal"),
    ("!!int 0x", "invalid literal"),
    ("!!float abc", "could not convert"),
    ("!!bool maybe", "maybe"),
    ("!!timestamp 2020-13-45", "month must be in 1..12"),
])
def test_a_value_its_tag_cannot_hold_is_that_fields_error(value: str, says: str) -> None:
    text = POOL.format(name=value)
    [(line, path, message)] = problems(text)
    assert (line, path) == (4, "metadata.name")
    assert message.startswith("cannot read this value (") and says in message


def test_an_unknown_tag_on_a_key_is_an_error_too() -> None:
    [(line, _, message)] = problems(POOL.format(name="x") + "  !!python/name:os.system k: 1\n")
    assert line == 7 and "could not determine a constructor" in message


# ---------------------------------------------------------------- finding 2 (fuzz: cluster-file)
# A character YAML does not allow (a control character) gave an error with no line: PyYAML's
# ReaderError carries a character position, not a mark.


def test_a_control_character_is_reported_with_its_line() -> None:
    assert problems("apiVersion: projectcalico.org/v3\nkin\"d:\x18IPPool\n") == [
        (2, "", "not valid YAML: character U+0018 is not allowed")]
    assert problems("a: \ufffe\n")[0][0] == 1


# ---------------------------------------------------------------- finding 3 (soak: mutated files)
# A file that is not UTF-8 raised UnicodeDecodeError: `tortiectl apply -f` crashed, the daemons'
# reload (SIGHUP or file change) logged an exception, sent no reload-done to systemd and kept no count.

NOT_UTF8 = (POOL.format(name="x") + "  natOutgoing: \xff\n").encode("latin-1")


def test_tortiectl_apply_reports_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(NOT_UTF8)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = tortiectl(["--config", str(tmp_path / "cluster.yaml"), "apply", "-f", str(bad)])
    assert code == 1
    assert err.getvalue().startswith(f"{bad}: line 7: not UTF-8 text: byte 0xff")
    assert not (tmp_path / "cluster.yaml").exists()


def test_the_datastore_and_its_watch_report_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(POOL.format(name="good"))
    store = FileDatastore(path)
    good = store.load()
    with store.watch(backend="poll", poll_interval=3600) as watch:
        path.write_bytes(NOT_UTF8)
        with pytest.raises(ValidationError, match="line 7: not UTF-8 text"):
            store.load()
        event = watch.check_now()  # what SIGHUP does
        assert event is not None and isinstance(event.error, ValidationError)
        assert event.model == good and watch.current == good


# ---------------------------------------------------------------- finding 4 (fuzz: selector)
# Deeply nested parentheses or `!` (about 330 levels) raised RecursionError out of parse_selector
# (and so out of the cluster-file loader). Since rewritten, the parser takes `!` in a loop; parentheses
# still recurse and are bounded.


@pytest.mark.parametrize("source", ["(" * 400, "(" * 400 + "a == 'b'" + ")" * 400,
                                    "!(" * 200 + "has(a)" + ")" * 200])
def test_deep_nesting_is_a_selector_error(source: str) -> None:
    with pytest.raises(SelectorError, match="nested more than"):
        parse_selector(source)


def test_nesting_up_to_the_limit_parses_and_its_canonical_form_too() -> None:
    for source in ["!" * 400 + "has(a)", "(a == 'x' || " * MAX_DEPTH + "has(a)" + ")" * MAX_DEPTH]:
        selector = parse_selector(source)
        assert parse_selector(selector.canonical).canonical == selector.canonical
        assert selector.matches({"a": "y"})


def test_a_pool_with_a_deep_selector_is_a_validation_error() -> None:
    [(line, path, message)] = problems(POOL.format(name="p") + "  nodeSelector: '" + "(" * 300 + "has(a)"
                                       + ")" * 300 + "'\n")
    assert (line, path) == (7, "spec.nodeSelector") and "nested more than" in message


# ---------------------------------------------------------------- the harness


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_fuzz_targets_seeds_pass_its_oracle(target: str) -> None:
    module = load(target)
    seeds = list(module.seeds())
    assert seeds, f"{target} has no seeds"
    for seed in seeds:
        assert len(seed) <= module.MAX_LEN
        module.check(seed)
    assert all((REPO / c).exists() for c in module.COVERS)
