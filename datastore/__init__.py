"""Where the cluster's resources live and how changes reach the daemons.

`open_datastore(path)` gives the file datastore; daemons call `load()` once and `watch()` for changes,
tortiectl calls `apply`, `delete` and `transact` (for IPAM).
"""

from __future__ import annotations

import os

from datastore.base import Datastore, Watcher
from datastore.filestore import DEFAULT_PATH, FileDatastore
from datastore.watch import Watch, WatchEvent

__all__ = ["DEFAULT_PATH", "Datastore", "FileDatastore", "Watch", "WatchEvent", "Watcher", "open_datastore"]


def open_datastore(path: str | os.PathLike[str] = DEFAULT_PATH) -> Datastore:
    """The datastore for a `--config` value; today always a file (a URL scheme can select others later)."""
    return FileDatastore(path)
