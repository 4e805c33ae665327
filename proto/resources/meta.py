"""Kubernetes' rules for metadata, as Calico applies them to every resource (libcalico-go
`lib/validator/v3/validator.go` validateObjectMeta, with k8s.io/apimachinery `pkg/util/validation` and
`pkg/api/validate/content`): names are lowercase RFC 1123 subdomains, labels are qualified names with
short values, annotation keys are qualified names and all annotations together stay under 256 KiB.

Each check returns Kubernetes' own error strings, so a refusal reads as it would from calicoctl.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from proto.resources.errors import FieldError
from proto.resources.values import Labels

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_MAX = 253
DNS1123_LABEL_MAX = 63
LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_KEY_NAME_MAX = 63
LABEL_VALUE_FMT = "(" + LABEL_KEY_FMT + ")?"
LABEL_VALUE_MAX = 63
ANNOTATIONS_MAX_BYTES = 256 * 1024

_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_FMT)
_LABEL = re.compile(DNS1123_LABEL_FMT)
_KEY = re.compile(LABEL_KEY_FMT)
_VALUE = re.compile(LABEL_VALUE_FMT)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def subdomain_errors(value: str) -> list[str]:
    """k8s IsDNS1123Subdomain."""
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} bytes")
    if not _SUBDOMAIN.fullmatch(value):
        errs.append(_regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                 "characters, '-' or '.', and must start and end with an alphanumeric character",
                                 DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def dns_label_errors(value: str) -> list[str]:
    """k8s IsDNS1123Label (namespace names)."""
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(f"must be no more than {DNS1123_LABEL_MAX} bytes")
    if not _LABEL.fullmatch(value):
        errs.append(_regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                                 "or '-', and must start and end with an alphanumeric character",
                                 DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """k8s IsQualifiedName / IsLabelKey: `[prefix/]name`, prefix a DNS subdomain, name at most 63."""
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + e for e in subdomain_errors(prefix)]
    else:
        return ["a valid label key " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character", LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > LABEL_KEY_NAME_MAX:
        errs.append(f"name part must be no more than {LABEL_KEY_NAME_MAX} bytes")
    if not _KEY.fullmatch(name):
        errs.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character", LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """k8s IsValidLabelValue."""
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(f"must be no more than {LABEL_VALUE_MAX} bytes")
    if not _VALUE.fullmatch(value):
        errs.append(_regex_error("a valid label must be an empty string or consist of alphanumeric characters, "
                                 "'-', '_' or '.', and must start and end with an alphanumeric character",
                                 LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def name_errors(value: str) -> list[str]:
    """Calico's resource name rule (its nameRegex is the DNS-1123 subdomain), in Calico's words."""
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"name is too long by {len(value) - DNS1123_SUBDOMAIN_MAX} bytes")
    if not _SUBDOMAIN.fullmatch(value):
        errs.append("name must consist of lower case alphanumeric characters, '-' or '.' "
                    f"(regex: {DNS1123_SUBDOMAIN_FMT})")
    return errs


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what}, got {value!r}")
    return value


def resource_name(value: Any) -> str:
    """A resource name (metadata.name, and the names resources use to refer to each other)."""
    text = _string(value, "a name")
    errs = name_errors(text)
    if errs:
        raise ValueError(f"{text!r}: " + "; ".join(errs))
    return text


def namespace(value: Any) -> str:
    text = _string(value, "a namespace name")
    errs = dns_label_errors(text)
    if errs:
        raise ValueError(f"{text!r}: " + "; ".join(errs))
    return text


def labels(value: Any) -> Labels:
    """metadata.labels: qualified-name keys, string values of at most 63 characters."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of label names to values, got {value!r}")
    for key, val in value.items():
        key = str(key)
        errs = qualified_name_errors(key)
        if errs:
            raise FieldError(f".{key}", f"invalid label key {key!r}: " + "; ".join(errs))
        if not isinstance(val, str):
            raise FieldError(f".{key}", f"label values are strings; quote {val!r}")
        errs = label_value_errors(val)
        if errs:
            raise FieldError(f".{key}", f"invalid label value {val!r}: " + "; ".join(errs))
    return Labels({str(k): v for k, v in value.items()})


def annotations(value: Any) -> Labels:
    """metadata.annotations: qualified-name keys (checked lowercased, as Calico does), string values,
    at most 256 KiB of keys and values together."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of annotation names to values, got {value!r}")
    total = 0
    for key, val in value.items():
        key = str(key)
        errs = qualified_name_errors(key.lower())
        if errs:
            raise FieldError(f".{key}", f"invalid annotation key {key!r}: " + "; ".join(errs))
        if not isinstance(val, str):
            raise FieldError(f".{key}", f"annotation values are strings; quote {val!r}")
        total += len(key.encode()) + len(val.encode())
    if total > ANNOTATIONS_MAX_BYTES:
        raise ValueError(f"total size of annotations is too large by {total - ANNOTATIONS_MAX_BYTES} bytes")
    return Labels({str(k): v for k, v in value.items()})
