"""Choosing the datastore as calicoctl users do: a CalicoAPIConfig file or calicoctl's variables.

Facts from Calico's libcalico-go/lib/apiconfig (apiconfig.go, load.go): the file is a
`projectcalico.org/v3` `CalicoAPIConfig` whose `spec` holds `datastoreType`, `etcdEndpoints` (comma
separated URLs), `etcdUsername`, `etcdPassword`, `etcdKeyFile`, `etcdCertFile`, `etcdCACertFile` and the
inline `etcdKey`, `etcdCert`, `etcdCACert`; the same settings come from `DATASTORE_TYPE`,
`ETCD_ENDPOINTS`, `ETCD_USERNAME`, `ETCD_PASSWORD`, `ETCD_KEY_FILE`, `ETCD_CERT_FILE`,
`ETCD_CA_CERT_FILE`; endpoints given without a type mean etcdv3. Unknown fields are an error
(calicoctl reads the file strictly).

tortie's order (docs/datastore.md):
1. `--config PATH` naming a CalicoAPIConfig file: that file.
2. `DATASTORE_TYPE=etcdv3` or `ETCD_ENDPOINTS` in the environment (`DATASTORE_TYPE=file` turns 2 and 3
   off).
3. With `--config` left at its default: the client configuration file `/etc/tortie/datastore.cfg`
   ($TORTIE_DATASTORE_CONFIG), if it exists.
4. Otherwise the cluster file at `--config` (`/etc/tortie/cluster.yaml`), as before.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from datastore.etcd_config import ClientConfig
from proto.record import record

DEFAULT_CLIENT_CONFIG = Path("/etc/tortie/datastore.cfg")
KIND = "CalicoAPIConfig"
API_VERSION = "projectcalico.org/v3"
TYPES = ("etcdv3", "file")

_FILE_FIELDS = {
    "etcdEndpoints": "endpoints", "etcdUsername": "username", "etcdPassword": "password",
    "etcdKeyFile": "key_file", "etcdCertFile": "cert_file", "etcdCACertFile": "ca_file",
}
_INLINE_FIELDS = {"etcdKey": "key_file", "etcdCert": "cert_file", "etcdCACert": "ca_file"}
_ENV = {
    "ETCD_ENDPOINTS": "endpoints", "ETCD_USERNAME": "username", "ETCD_PASSWORD": "password",
    "ETCD_KEY_FILE": "key_file", "ETCD_CERT_FILE": "cert_file", "ETCD_CA_CERT_FILE": "ca_file",
}


class ConfigError(ValueError):
    """The client configuration is unusable; the message names the file or variable and the field."""


@record(frozen=True, slots=True)
class DatastoreConfig:
    type: str  # "file" or "etcdv3"
    source: str  # where the choice came from, for logs and errors
    path: Path | None = None  # the cluster file (type "file")
    etcd: ClientConfig | None = None


def is_client_config(path: Path) -> bool:
    """Whether `path` holds a CalicoAPIConfig (rather than a cluster file of resources)."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    if b"CalicoAPIConfig" not in head:
        return False
    try:
        doc = yaml.safe_load(head)
    except yaml.YAMLError:
        return False
    return isinstance(doc, dict) and doc.get("kind") == KIND


def _endpoints(text: str, where: str) -> tuple[str, ...]:
    out = []
    for item in (e.strip() for e in text.split(",")):
        if not item:
            continue
        if not item.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: etcd endpoint {item!r} needs a scheme (http:// or https://)")
        out.append(item.rstrip("/"))
    if not out:
        raise ConfigError(f"{where}: no etcd endpoints given")
    return tuple(out)


def _inline(pem: str, name: str) -> str:
    """Calico's inline certificates: written to a private file the TLS library can read."""
    folder = _inline_dir()
    path = Path(folder) / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    return str(path)


_INLINE_DIR: list[str] = []


def _inline_dir() -> str:
    if not _INLINE_DIR:
        import shutil  # here, not at import: they bring bz2, lzma and random into every daemon
        import tempfile

        _INLINE_DIR.append(tempfile.mkdtemp(prefix="tortie-etcd-"))
        atexit.register(shutil.rmtree, _INLINE_DIR[0], True)
    return _INLINE_DIR[0]


def _etcd(values: Mapping[str, str], where: str) -> ClientConfig:
    endpoints = _endpoints(values.get("endpoints") or "http://127.0.0.1:2379", where)
    return ClientConfig(endpoints=endpoints, ca_file=values.get("ca_file") or None,
                        cert_file=values.get("cert_file") or None, key_file=values.get("key_file") or None,
                        username=values.get("username") or None, password=values.get("password") or None)


def load_client_config(path: Path) -> DatastoreConfig:
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a CalicoAPIConfig mapping")
    if doc.get("apiVersion") != API_VERSION:
        raise ConfigError(f"{where}: apiVersion {doc.get('apiVersion')!r} is not {API_VERSION}")
    if doc.get("kind") != KIND:
        raise ConfigError(f"{where}: kind {doc.get('kind')!r} is not {KIND}")
    unknown = sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec"})
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown field")
    spec: Any = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: spec: expected a mapping")
    values: dict[str, str] = {}
    dtype = spec.get("datastoreType")
    for key, value in spec.items():
        if key == "datastoreType":
            continue
        if key in _FILE_FIELDS or key in _INLINE_FIELDS:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: spec.{key}: expected a string")
            if key in _INLINE_FIELDS:
                if value:
                    values[_INLINE_FIELDS[key]] = _inline(value, key)
            else:
                values[_FILE_FIELDS[key]] = value
        elif key in ("etcdDiscoverySrv", "kubeconfig", "k8sAPIEndpoint"):
            raise ConfigError(f"{where}: spec.{key}: tortie does not implement this field")
        else:
            raise ConfigError(f"{where}: spec.{key}: unknown field")
    if dtype is None:
        dtype = "etcdv3" if values.get("endpoints") else None
    if dtype != "etcdv3":
        raise ConfigError(f"{where}: spec.datastoreType: {dtype!r} is not supported (tortie reads "
                          "etcdv3; for the cluster file, point --config at it)")
    return DatastoreConfig("etcdv3", where, etcd=_etcd(values, where))


def from_environment(environ: Mapping[str, str]) -> DatastoreConfig | None:
    """The datastore calicoctl's variables select, or None when they select nothing."""
    dtype = environ.get("DATASTORE_TYPE", "").strip()
    if not dtype and not environ.get("ETCD_ENDPOINTS", "").strip():
        return None
    if dtype in ("", "etcdv3"):
        values = {field: environ[var] for var, field in _ENV.items() if environ.get(var)}
        for var, field in (("ETCD_KEY", "key_file"), ("ETCD_CERT", "cert_file"), ("ETCD_CA_CERT", "ca_file")):
            if environ.get(var) and field not in values:
                values[field] = _inline(environ[var], var)
        return DatastoreConfig("etcdv3", "environment (DATASTORE_TYPE / ETCD_*)",
                               etcd=_etcd(values, "ETCD_ENDPOINTS"))
    if dtype == "file":
        return None
    raise ConfigError(f"DATASTORE_TYPE={dtype!r} is not supported (tortie reads etcdv3, or the cluster "
                      "file when DATASTORE_TYPE is unset or 'file')")


def select(config: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
           default_cluster_file: str | os.PathLike[str] = "/etc/tortie/cluster.yaml") -> DatastoreConfig:
    """Which datastore `--config config` means here (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    path = Path(config)
    if is_client_config(path):
        return load_client_config(path)
    chosen = from_environment(env)
    if chosen is not None:
        return chosen
    if env.get("DATASTORE_TYPE", "").strip() != "file" and path == Path(default_cluster_file):
        default = Path(env.get("TORTIE_DATASTORE_CONFIG") or DEFAULT_CLIENT_CONFIG)
        if default.exists():
            return load_client_config(default)
    return DatastoreConfig("file", str(path), path=path)


def needs_ssl(config: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether opening the datastore `config` selects loads Python's `ssl` module: any etcd does (its
    HTTP client, httpx, imports ssl whether or not the endpoints use TLS); the file datastore does
    not. A choice that cannot be made says yes: opening it reports the problem."""
    try:
        chosen = select(config, environ)
    except ConfigError:
        return True
    return chosen.type != "file" and chosen.etcd is not None
