"""What every resource kind has: a name, labels, annotations, the fields it keeps without acting on them,
where it was read from, and its YAML form."""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Any, ClassVar

from proto.record import record
from proto.resources.constants import API_VERSION
from proto.resources.errors import Problem, SourceLocation
from proto.resources.values import Frozen, Labels, thaw

if TYPE_CHECKING:
    from proto.resources.fields import FieldReader


@record(frozen=True, kw_only=True)
class Resource:
    kind: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    # spec fields tortie keeps and writes back but does not act on (none of them changes routing);
    # each kind lists them in KEPT with the rule they are checked against (docs/configuration.md)
    KEPT: ClassVar[tuple[str, ...]] = ()

    name: str
    labels: Labels = field(default_factory=Labels)
    annotations: Labels = field(default_factory=Labels)
    kept: Frozen = field(default_factory=Frozen)
    location: SourceLocation | None = field(default=None, compare=False, repr=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @classmethod
    def read_spec(cls, spec: FieldReader, name: str = "") -> dict[str, Any]:
        """The dataclass fields from `spec` (`name` is metadata.name, for rules that depend on it)."""
        raise NotImplementedError

    def spec_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def metadata_dict(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        return meta

    def to_dict(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": self.kind, "metadata": self.metadata_dict(),
                "spec": {**thaw(self.kept), **self.spec_dict()}}

    def problem(self, path: str, message: str) -> Problem:
        if self.location is None:
            return Problem(message, kind=self.kind, name=self.name, path=path)
        return self.location.problem(self.kind, self.name, path, message)
