"""Where the cluster's resources live and how changes reach the daemons.

`open_datastore(config)` gives the datastore `--config` selects: the cluster file, or Calico's etcd v3
datastore (a CalicoAPIConfig file, or calicoctl's DATASTORE_TYPE / ETCD_* variables; see
`datastore.apiconfig`). Daemons call `load()` once and `watch()` for changes, tortiectl calls `apply`,
`delete` and `transact` (for IPAM).

The names below are loaded on first use (PEP 562), so importing one submodule never imports the others
through this package: no import cycle between the package and its modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datastore.base import Datastore, Watcher
    from datastore.events import WatchEvent
    from datastore.filestore import DEFAULT_PATH, FileDatastore
    from datastore.open import open_datastore
    from datastore.watch import Watch

__all__ = ["DEFAULT_PATH", "Datastore", "FileDatastore", "Watch", "WatchEvent", "Watcher", "open_datastore"]

_WHERE = {
    "DEFAULT_PATH": "datastore.filestore", "FileDatastore": "datastore.filestore",
    "Datastore": "datastore.base", "Watcher": "datastore.base", "WatchEvent": "datastore.events",
    "Watch": "datastore.watch", "open_datastore": "datastore.open",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'datastore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
