"""Reloading a cluster file without reading again the documents that did not change.

A daemon reads its whole cluster file after every change to it, and one change is usually one
document (a block claimed, a node added): parsing and validating the file costs about 0.2 ms per
document (20 ms for a 50-node file, 360 ms for 1,000 nodes), paid by every daemon of the cluster.
So the text is cut into its documents where YAML cuts them (a `---` at the start of a line: the
marker cannot occur inside any scalar), and a document whose text is the same as at the last load
of that source is not parsed again: its resources are taken as they were, moved to their new
document number and lines when documents before it came or went.

What comes out is what parsing the whole text gives (tests/unit/test_resources_reuse.py compares the
two on generated files). Where the cut could differ from the parser's, nothing is reused: a text
with directives (`%YAML`), or any document with a problem (the whole text is then read again, so
that every error is reported exactly as a whole read reports it).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable

from proto.record import record
from proto.resources.errors import Problem, SourceLocation, ValidationError
from proto.resources.kinds import Resource

# A document marker: `---` at the start of a line, then a space, a tab or the end of the line.
_MARKER = re.compile(r"^---(?=[ \t\r\n]|\Z)", re.M)
_KEEP_SOURCES = 8  # the files whose last documents are kept (a daemon reads one; tests read many)


@record(frozen=True, slots=True)
class Documents:
    """What a text of one or more documents held: document numbers from 1, lines from its first line."""

    count: int  # the documents the text held (empty ones too: they are numbered)
    resources: tuple[Resource, ...]
    warnings: tuple[Problem, ...]
    problems: tuple[Problem, ...]


Reader = Callable[[str, str], Documents]
_last: dict[str, dict[str, _Placed]] = {}  # source -> document text -> what it held, at the last load
_lock = threading.Lock()


def split(text: str) -> list[tuple[int, str]] | None:
    """(0-based first line, text) of each document-sized piece of `text`, cut before every `---`
    marker; None when the text has directives, which belong to the document after them."""
    if text.startswith("%") or "\n%" in text:
        return None
    starts = [m.start() for m in _MARKER.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    pieces: list[tuple[int, str]] = []
    line = 0
    for begin, end in zip(starts, [*starts[1:], len(text)], strict=True):
        piece = text[begin:end]
        pieces.append((line, piece))
        line += piece.count("\n")
    return pieces


def load(text: str, source: str, read: Reader) -> tuple[tuple[Resource, ...], tuple[Problem, ...]] | None:
    """The resources and warnings of `text`, the unchanged documents of the last load of `source`
    reused; None when the caller should read the whole text itself (a problem, directives, one
    document)."""
    pieces = split(text)
    if pieces is None or len(pieces) < 2:
        return None
    with _lock:
        before = _last.get(source, {})
    now: dict[str, _Placed] = {}
    resources: list[Resource] = []
    warnings: list[Problem] = []
    document = 0
    for first_line, piece in pieces:
        placed = now.get(piece) or before.get(piece)
        if placed is None or placed.document != document or placed.line != first_line:
            got = placed.held if placed is not None else None
            if got is None:
                try:
                    got = read(piece, source)
                except ValidationError:  # not YAML: the whole text's read says where, in its own lines
                    return None
                if got.problems:
                    return None
            placed = _Placed(got, document, first_line, *_placed(got, document, first_line))
        now[piece] = placed
        resources += placed.resources
        warnings += placed.warnings
        document += placed.held.count
    with _lock:
        _last.pop(source, None)
        _last[source] = now
        while len(_last) > _KEEP_SOURCES:
            del _last[next(iter(_last))]
    return tuple(resources), tuple(warnings)


@record(frozen=True, slots=True)
class _Placed:
    """A document's resources where they were last: the same objects while it stays there."""

    held: Documents  # numbered and lined as if the document were the whole text
    document: int  # documents before it
    line: int  # lines before it
    resources: tuple[Resource, ...]
    warnings: tuple[Problem, ...]


def _placed(got: Documents, documents: int, lines: int) -> tuple[tuple[Resource, ...], tuple[Problem, ...]]:
    if documents == 0 and lines == 0:
        return got.resources, got.warnings
    return (tuple(_moved(r, documents, lines) for r in got.resources),
            tuple(_moved_problem(w, documents, lines) for w in got.warnings))


def _moved(resource: Resource, documents: int, lines: int) -> Resource:
    at = resource.location
    if at is None:
        return resource
    moved = SourceLocation(at.source, at.document + documents, at.item, {k: v + lines for k, v in at.lines.items()})
    return dataclasses.replace(resource, location=moved)


def _moved_problem(problem: Problem, documents: int, lines: int) -> Problem:
    return dataclasses.replace(problem, document=None if problem.document is None else problem.document + documents,
                               line=None if problem.line is None else problem.line + lines)

