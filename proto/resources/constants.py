"""Calico's API version and defaults, shared by the resource kinds, the loader and the dumper."""

from __future__ import annotations

import ipaddress

API_VERSION = "projectcalico.org/v3"
DEFAULT_AS_NUMBER = 64512
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
BLOCK_SIZE_RANGE = {4: (20, 32), 6: (116, 128)}
ENCAP_MODES = ("Never", "Always", "CrossSubnet")
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))

# Written by a Calico datastore (Kubernetes API or etcd), not by the operator: accepted and dropped.
IGNORED_METADATA = frozenset({
    "creationTimestamp", "resourceVersion", "uid", "generation", "selfLink", "managedFields", "finalizers",
    "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds", "generateName",
})
