"""Dumping resources as YAML the way calicoctl prints them; the output is valid input to the loader."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from proto.resources.constants import API_VERSION
from proto.resources.kinds import Resource


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(resources: Iterable[Resource]) -> str:
    """Multi-document YAML, keys sorted as calicoctl prints them; valid input for `load_resources`."""
    docs = [r.to_dict() for r in resources]
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                         explicit_start=True) if docs else ""


def list_dict(kind: str, resources: Iterable[Resource], revision: int | None = None) -> dict[str, Any]:
    """The `<Kind>List` wrapper calicoctl prints for several results."""
    meta: dict[str, Any] = {}
    if revision is not None:
        meta["resourceVersion"] = str(revision)
    return {"apiVersion": API_VERSION, "items": [r.to_dict() for r in resources], "kind": f"{kind}List",
            "metadata": meta}


def dump_list_yaml(kind: str, resources: Iterable[Resource], revision: int | None = None) -> str:
    return yaml.dump(list_dict(kind, resources, revision), Dumper=_Dumper, sort_keys=True,
                     default_flow_style=False)


