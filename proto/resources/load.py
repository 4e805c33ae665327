"""Loading resources from YAML: documents are composed to PyYAML nodes first so that every field keeps the
line it was written on; an error then names the file, the document, the line and the field path, e.g.

    cluster.yaml: document 3 (IPPool default-ipv4-ippool), line 12: spec.ipipMode: 'Sometimes' is not
    one of Never, Always, CrossSubnet

Every field is read explicitly; a field left over after reading is one tortie does not implement, and is
rejected by name rather than silently ignored; a field that tortie parses but does not act on yet, and
that would change routing, is refused by `pending`. Bookkeeping metadata a Calico datastore adds
(`creationTimestamp`, `resourceVersion`, `uid`, ...) and `status` are accepted and dropped, and the
fields each kind keeps (`Resource.KEPT`) are written back, so that the output of `calicoctl get -o yaml`
applies unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from proto import tortie_annotations
from proto.record import record
from proto.resources import fields as f
from proto.resources import reuse
from proto.resources.constants import API_VERSION, IGNORED_METADATA
from proto.resources.errors import FieldError, Problem, SourceLocation, ValidationError
from proto.resources.kinds import (
    KINDS,
    BGPConfiguration,
    BlockAffinity,
    Resource,
    WorkloadEndpoint,
    block_affinity_name,
)
from proto.resources.meta import annotations, namespace
from proto.resources.pending import not_yet_problems
from proto.resources.values import Frozen, Labels

# libyaml's parser when PyYAML was built with it: several times faster, and its nodes carry marks too.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _construct(constructor: yaml.constructor.SafeConstructor, node: yaml.Node, path: str) -> Any:
    """A scalar's value. A tag the safe loader does not know (`!!python/...`) or a value its tag
    cannot hold (`!!int abc`, `!!bool maybe`) is this field's error, not a crash."""
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, KeyError, OverflowError) as exc:
        problem = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
        raise FieldError(path, f"cannot read this value ({node.tag}): {problem}", node.start_mark.line + 1) from None


def _plain(constructor: yaml.constructor.SafeConstructor, node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    """Node -> plain Python value, recording the line of every field path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise FieldError(path, "mapping keys must be plain strings")
            key = str(_construct(constructor, key_node, path))
            sub = f"{path}.{key}" if path else key
            if key in out:
                lines[sub] = key_node.start_mark.line + 1
                raise FieldError(sub, "duplicate key")
            lines[sub] = key_node.start_mark.line + 1
            out[key] = _plain(constructor, value_node, sub, lines)
            lines[sub] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(constructor, item, f"{path}[{i}]", lines) for i, item in enumerate(node.value)]
    return _construct(constructor, node, path)


def _documents(text: str, source: str) -> Iterator[yaml.Node | None]:
    """The documents' node trees one at a time (a file's whole tree at once is several times its
    resources' size); YAML that does not parse is a ValidationError naming the line."""
    try:
        yield from yaml.compose_all(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ValidationError([Problem(f"not valid YAML: {exc.problem or exc}", source, line=line)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: located by position, not mark
        line = text[:exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        raise ValidationError([Problem(f"not valid YAML: character U+{char:04X} is not allowed", source,
                                       line=line)]) from None
    except yaml.YAMLError as exc:
        raise ValidationError([Problem(f"not valid YAML: {exc}", source)]) from None


@record(frozen=True, slots=True)
class Loaded:
    resources: tuple[Resource, ...]
    warnings: tuple[Problem, ...]


def decode_text(data: bytes, source: str) -> str:
    """A cluster file's bytes as text: UTF-8 (YAML's default), or a ValidationError naming the line."""
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValidationError([Problem(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start a character "
                                       f"here ({exc.reason})", source, line=line)]) from None


def load_resources(text: str, source: str = "<string>") -> Loaded:
    """Parse and validate every resource of a multi-document YAML text (each on its own, not together).

    A text read before under the same `source` (a daemon reloading its cluster file) only has its
    changed documents parsed again: `proto.resources.reuse` keeps the last load's documents."""
    reused = reuse.load(text, source, _load_documents)
    if reused is not None:
        return Loaded(*reused)
    loaded = _load_documents(text, source)
    if loaded.problems:
        raise ValidationError(sorted(loaded.problems, key=_problem_order))
    return Loaded(loaded.resources, loaded.warnings)


def _load_documents(text: str, source: str) -> reuse.Documents:
    """Every document of `text`, numbered from 1 and with lines counted from its first line; the
    problems are returned, not raised (a YAML syntax error is raised: it has no document)."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    resources: list[Resource] = []
    # PyYAML's constructor remembers every node it constructed: one per load, or a shared one would
    # keep every node of every file ever loaded (and two threads may load at once)
    constructor = yaml.constructor.SafeConstructor()
    documents = 0
    for doc_no, node in enumerate(_documents(text, source), start=1):
        documents = doc_no
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            continue
        lines: dict[str, int] = {}
        try:
            data = _plain(constructor, node, "", lines)
        except FieldError as exc:
            problems.append(Problem(exc.message, source, doc_no, line=exc.line or lines.get(exc.path),
                                    path=exc.path))
            continue
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind.endswith("List"):
            _load_list(data, SourceLocation(source, doc_no, None, lines), resources, problems, warnings)
            continue
        resource = _load_one(data, SourceLocation(source, doc_no, None, lines), problems, warnings)
        if resource is not None:
            resources.append(resource)
    return reuse.Documents(documents, tuple(resources), tuple(warnings), tuple(problems))


def load_data(data: Any, source: str = "<data>") -> Loaded:
    """Validate one resource given as plain data (a JSON value as a datastore keeps it): the same
    rules as `load_resources`, without parsing text (no line numbers: `source` names the value)."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    resources: list[Resource] = []
    location = SourceLocation(source, 1, None, {})
    kind = data.get("kind") if isinstance(data, dict) else None
    if isinstance(kind, str) and kind.endswith("List"):
        _load_list(data, location, resources, problems, warnings)
    else:
        resource = _load_one(data, location, problems, warnings)
        if resource is not None:
            resources.append(resource)
    if problems:
        raise ValidationError(sorted(problems, key=_problem_order))
    return Loaded(tuple(resources), tuple(warnings))


def _problem_order(p: Problem) -> tuple[int, int, int]:
    return (p.document or 0, p.item or 0, p.line or 0)


def _load_list(data: dict[str, Any], location: SourceLocation, resources: list[Resource], problems: list[Problem],
               warnings: list[Problem]) -> None:
    """A `<Kind>List` as `calicoctl get -o yaml` prints several results: its `items` are resources."""
    kind = data["kind"]
    item_kind = kind[: -len("List")] or None
    if item_kind is not None and item_kind not in KINDS:
        problems.append(location.problem(kind, None, "kind", f"{kind!r} is not a kind tortie knows "
                                       f"({', '.join(KINDS)}, or their List)"))
        return
    unknown = sorted(set(data) - {"apiVersion", "kind", "items", "metadata"})
    for key in unknown:
        problems.append(location.problem(kind, None, key, "tortie does not implement this field"))
    items = data.get("items") or []
    if not isinstance(items, list):
        problems.append(location.problem(kind, None, "items", f"expected a list, got {f.describe(items)}"))
        return
    for i, item in enumerate(items):
        prefix = f"items[{i}]"
        sub_lines = {k[len(prefix) + 1:] if k.startswith(prefix + ".") else "": v
                     for k, v in location.lines.items() if k == prefix or k.startswith(prefix + ".")}
        if isinstance(item, dict):
            item = {"apiVersion": data.get("apiVersion", API_VERSION), **item}
            if item_kind is not None:
                item.setdefault("kind", item_kind)
        sub = SourceLocation(location.source, location.document, i + 1, sub_lines)
        if item_kind is not None and isinstance(item, dict) and item.get("kind") != item_kind:
            problems.append(sub.problem(str(item.get("kind")), None, "kind", f"a {kind} holds only {item_kind}"))
            continue
        resource = _load_one(item, sub, problems, warnings)
        if resource is not None:
            resources.append(resource)


def _load_one(data: Any, location: SourceLocation, problems: list[Problem], warnings: list[Problem]) -> Resource | None:
    if not isinstance(data, dict):
        problems.append(location.problem("", None, "", f"expected a resource mapping, got {f.describe(data)}"))
        return None
    kind = data.get("kind")
    name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
    name = name if isinstance(name, str) else None
    display_kind = kind if isinstance(kind, str) else None
    errors: list[FieldError] = []
    field_warnings: list[FieldError] = []
    top = f.FieldReader(data, "", errors, field_warnings)
    api = top.get("apiVersion", f.string, required=True)
    if isinstance(api, str) and api != API_VERSION:
        top.error("apiVersion", f"{api!r} is not supported; tortie reads {API_VERSION} resources")
    kind = top.get("kind", f.string, required=True)
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if isinstance(kind, str) and cls is None:
        top.error("kind", f"{kind!r} is not a kind tortie knows ({', '.join(KINDS)})")
    if cls is None:
        top.drop(["metadata", "spec", "status"])
        _report(errors, field_warnings, location, display_kind, name, problems, warnings)
        return None
    meta = top.sub("metadata")
    fields: dict[str, Any] = {}
    if cls is BGPConfiguration:
        fields["name"] = meta.get("name", f.name, "default")
    elif cls is BlockAffinity:
        fields["name"] = meta.get("name", f.name)
    else:
        fields["name"] = meta.get("name", f.name, required=True)
    fields["labels"] = meta.get("labels", f.labels, Labels())
    fields["annotations"] = meta.get("annotations", annotations, Labels())
    if isinstance(fields["annotations"], Labels):  # tortie's own settings (bfd.tortie.io/*, ...)
        for key, message in tortie_annotations.problems(cls.kind, fields["annotations"]):
            meta.error(f"annotations.{key}", message)
    if cls is WorkloadEndpoint:
        fields["namespace"] = meta.get("namespace", namespace)
    elif meta.has("namespace"):
        meta.error("namespace", f"a {cls.kind} is not namespaced (Calico's {cls.kind} is cluster-wide)")
        meta.drop(["namespace"])
    meta.drop(IGNORED_METADATA)
    meta.finish()
    top.drop(["status"])  # observed state a Calico datastore keeps; not configuration
    spec = top.sub("spec")
    spec_name = fields["name"] if isinstance(fields["name"], str) else ""
    fields.update(cls.read_spec(spec, name=spec_name))
    fields["kept"] = Frozen(spec.kept)
    spec.finish()
    top.finish()
    if cls is BlockAffinity and fields["name"] is None and not errors:
        fields["name"] = block_affinity_name(fields["node"], fields["cidr"])
    if errors:
        _report(errors, field_warnings, location, cls.kind, name, problems, warnings)
        return None
    _report([], field_warnings, location, cls.kind, fields["name"], problems, warnings)
    resource = cls(location=location, **fields)
    pending = not_yet_problems(resource)
    if pending:
        problems.extend(pending)
        return None
    return resource


def _report(errors: list[FieldError], field_warnings: list[FieldError], location: SourceLocation, kind: str | None,
            name: str | None, problems: list[Problem], warnings: list[Problem]) -> None:
    for err in errors:
        problems.append(location.problem(kind or "", name, err.path, err.message))
    for warn in field_warnings:
        warnings.append(location.problem(kind or "", name, warn.path, warn.message))


