"""Errors and source locations: every problem names the file, document, line and field it is about."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import field

from proto.record import record


@record(frozen=True, slots=True)
class Problem:
    """One validation error or warning, located as precisely as the input allows."""

    message: str
    source: str = ""
    document: int | None = None  # 1-based, counting every `---` document of the file
    item: int | None = None  # 1-based position inside a `<Kind>List` document
    kind: str | None = None
    name: str | None = None
    line: int | None = None  # 1-based
    path: str = ""

    def __str__(self) -> str:
        where: list[str] = []
        if self.document is not None:
            doc = f"document {self.document}"
            if self.item is not None:
                doc += f" item {self.item}"
            if self.kind:
                doc += f" ({self.kind} {self.name})" if self.name else f" ({self.kind})"
            where.append(doc)
        if self.line is not None:
            where.append(f"line {self.line}")
        head = f"{self.source}: " if self.source else ""
        if where:
            head += ", ".join(where) + ": "
        if self.path:
            head += f"{self.path}: "
        return head + self.message


class ValidationError(ValueError):
    """The input is not a valid cluster configuration; `problems` lists every error found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NotFoundError(LookupError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"resource does not exist: {kind}({name})")
        self.kind = kind
        self.name = name


class FieldError(Exception):
    """A problem with one field while reading it; `path` is relative to the reader that raised it."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.line = line  # when the path alone does not locate it (a bad mapping key)


@record(frozen=True, slots=True)
class SourceLocation:
    """Where a resource was read from, so that cross-resource checks can point at its lines too."""

    source: str
    document: int
    item: int | None = None
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)

    def line_for(self, path: str) -> int | None:
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if ("." in path or "[" in path) else ""

    def problem(self, kind: str, name: str | None, path: str, message: str) -> Problem:
        return Problem(message, self.source, self.document, self.item, kind, name, self.line_for(path), path)


