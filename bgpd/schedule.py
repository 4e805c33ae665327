"""The earliest of many deadlines, without walking them: a heap with lazy invalidation.

The speaker's timed objects (sessions, update groups, graceful restart) change their deadlines all
the time: a hold timer restarts with every message. Registering is O(1) when the deadline moves later
(the earlier entry stays and, when it comes due, the object is asked again and re-registered at its
real deadline) and O(log n) when it moves earlier. A thousand peers cost nothing per event.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable


class Schedule:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._at: dict[Hashable, float] = {}  # each object's live entry
        self._count = itertools.count()

    def __len__(self) -> int:
        return len(self._at)

    def update(self, obj: Hashable, deadline: float | None) -> None:
        """`obj` wants to be woken at `deadline` (None: not at all)."""
        if deadline is None:
            self._at.pop(obj, None)  # its entries go stale
            return
        current = self._at.get(obj)
        if current is not None and current <= deadline:
            return  # the earlier entry will wake it; it re-registers then
        self._at[obj] = deadline
        heapq.heappush(self._heap, (deadline, next(self._count), obj))

    def remove(self, obj: Hashable) -> None:
        self._at.pop(obj, None)

    def __contains__(self, obj: Hashable) -> bool:
        return obj in self._at

    def _drop_stale(self) -> None:
        heap, at = self._heap, self._at
        while heap and at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[Hashable]:
        """The objects whose deadline is at or before `now`, removed: register them again."""
        heap, at = self._heap, self._at
        out = []
        while heap and heap[0][0] <= now:
            when, _, obj = heapq.heappop(heap)
            if at.get(obj) == when:
                del at[obj]
                out.append(obj)
        self._drop_stale()
        return out
