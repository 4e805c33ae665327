"""`open_datastore`: the datastore a `--config` value selects (see datastore.apiconfig for the order)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from datastore.apiconfig import ConfigError, select
from datastore.base import Datastore
from datastore.filestore import DEFAULT_PATH, FileDatastore

log = logging.getLogger("tortie.datastore")


def open_datastore(config: str | os.PathLike[str] = DEFAULT_PATH,
                   environ: Mapping[str, str] | None = None) -> Datastore:
    """The file datastore, or the etcd datastore when a CalicoAPIConfig or calicoctl's variables say so.

    Raises OSError (ConfigError's message names the file or variable) when the choice is unusable.
    """
    try:
        chosen = select(config, environ, DEFAULT_PATH)
    except ConfigError as exc:
        raise OSError(str(exc)) from None
    if chosen.type == "file":
        assert chosen.path is not None
        return FileDatastore(chosen.path)
    from datastore.etcdstore import EtcdDatastore  # only etcd users pay for httpx

    assert chosen.etcd is not None
    log.debug("datastore: etcdv3 at %s (from %s)", ",".join(chosen.etcd.endpoints), chosen.source)
    return EtcdDatastore(chosen.etcd, source=chosen.source)
