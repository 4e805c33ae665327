"""What every resource kind has: a name, labels, where it was read from, and its YAML form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from proto.resources.constants import API_VERSION
from proto.resources.errors import Problem, SourceLocation
from proto.resources.values import Labels


@dataclass(frozen=True, kw_only=True)
class Resource:
    kind: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()

    name: str
    labels: Labels = field(default_factory=Labels)
    location: SourceLocation | None = field(default=None, compare=False, repr=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def spec_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def metadata_dict(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.labels:
            meta["labels"] = dict(self.labels)
        return meta

    def to_dict(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": self.kind, "metadata": self.metadata_dict(),
                "spec": self.spec_dict()}

    def problem(self, path: str, message: str) -> Problem:
        if self.location is None:
            return Problem(message, kind=self.kind, name=self.name, path=path)
        return self.location.problem(self.kind, self.name, path, message)


