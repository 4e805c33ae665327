"""What a datastore watch delivers: the model in force, or an error beside the last good model."""

from __future__ import annotations

from dataclasses import dataclass

from proto.resources import ClusterModel


@dataclass(frozen=True, slots=True)
class WatchEvent:
    model: ClusterModel  # the model in force: the new one, or the last good one when `error` is set
    error: Exception | None = None  # ValidationError, or OSError (file missing or unreadable)

    @property
    def ok(self) -> bool:
        return self.error is None
