"""The Calico v3 resources tortie reads: schema, defaults, validation, YAML load and dump, the cluster model.

One concept per module; this package re-exports the public names, so callers write
`from proto.resources import ClusterModel, load_model`:

- `errors`: `Problem`, `ValidationError`, `NotFoundError`, `FieldError`, `SourceLocation`
- `values`: labels, passwords, durations, AS numbers, communities, names Calico derives
- `meta`: Kubernetes' rules for names, labels and annotations
- `fields`: the field reader and the converters from YAML values to typed ones
- `kinds/`: one module per resource kind, `KINDS` and `kind_for`
- `pending`: the fields tortie parses but refuses until it implements them
- `load` / `dump`: YAML with line numbers in, calicoctl's YAML out
- `model`: `ClusterModel`, the cross-resource rules and the daemons' lookups
"""

from proto.resources.constants import (
    API_VERSION,
    BLOCK_SIZE_RANGE,
    DEFAULT_AS_NUMBER,
    DEFAULT_BLOCK_SIZE,
    ENCAP_MODES,
    IGNORED_METADATA,
    LINK_LOCAL,
)
from proto.resources.dump import dump_list_yaml, dump_yaml, list_dict
from proto.resources.errors import FieldError, NotFoundError, Problem, SourceLocation, ValidationError
from proto.resources.kinds import (
    IPNAT,
    KINDS,
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    FilterOperation,
    FilterRule,
    IPPool,
    NamedCommunity,
    Node,
    PrefixAdvertisement,
    Resource,
    WorkloadEndpoint,
    block_affinity_name,
    kind_for,
)
from proto.resources.load import Loaded, decode_text, load_data, load_resources
from proto.resources.model import IMMUTABLE_FIELDS, ClusterModel, load_model
from proto.resources.pending import NOT_YET, not_yet_problems
from proto.resources.values import (
    DEFAULT_SECRETS_DIR,
    Community,
    Frozen,
    IPAddress,
    IPInterface,
    IPNetwork,
    Labels,
    Password,
    format_duration,
    parse_as_number,
    parse_community,
    parse_duration,
    vtep_mac_for,
    workload_interface_name,
)

__all__ = [
    "DEFAULT_SECRETS_DIR", "IPNAT", "NOT_YET", "BGPFilter", "Community", "FilterOperation", "FilterRule",
    "Frozen", "NamedCommunity", "PrefixAdvertisement", "not_yet_problems", "parse_community",
    "API_VERSION", "BLOCK_SIZE_RANGE", "DEFAULT_AS_NUMBER", "DEFAULT_BLOCK_SIZE", "ENCAP_MODES",
    "IGNORED_METADATA", "IMMUTABLE_FIELDS", "KINDS", "LINK_LOCAL", "BGPConfiguration", "BGPPeer",
    "BlockAffinity", "ClusterModel", "FieldError", "IPAddress", "IPInterface", "IPNetwork", "IPPool", "Labels",
    "Loaded", "Node", "NotFoundError", "Password", "Problem", "Resource", "SourceLocation", "ValidationError",
    "WorkloadEndpoint", "block_affinity_name", "dump_list_yaml", "dump_yaml", "format_duration", "kind_for",
    "decode_text", "list_dict", "load_data", "load_model", "load_resources", "parse_as_number", "parse_duration", "vtep_mac_for",
    "workload_interface_name",
]
