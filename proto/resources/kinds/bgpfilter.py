"""BGPFilter: ordered import and export rules for IPv4 and IPv6 routes, referenced by BGPPeer `filters`.

Rules from Calico v3.32: api `pkg/apis/projectcalico/v3/bgpfilter.go` (fields, enums, limits and the CRD's
x-kubernetes-validations) and libcalico-go `lib/validator/v3/validator.go` (validateBGPFilterRule,
validateBGPFilterOperation, bgpFilterInterface, bgpFilterPrefixLength). A BGPFilter on its own changes
nothing; it acts once a BGPPeer names it in `filters` (bgpd/filters.py applies it).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from proto.record import record
from proto.resources import fields as f
from proto.resources.errors import FieldError
from proto.resources.kinds.base import Resource
from proto.resources.values import Community, IPNetwork, parse_as_number, parse_community

RULE_LISTS = (("exportV4", 4), ("importV4", 4), ("exportV6", 6), ("importV6", 6))
MATCH_OPERATORS = ("Equal", "NotEqual", "In", "NotIn")
ACTIONS = ("Accept", "Reject")
PEER_TYPES = ("eBGP", "iBGP")
PRIORITY_MAX = 2147483646
CIDR_MAX = {4: 18, 6: 43}
_INTERFACE = re.compile(r"[a-zA-Z0-9_.*-]{1,15}")


@record(frozen=True, slots=True)
class FilterOperation:
    """Exactly one of: add a community, prepend AS numbers, set the route's priority."""

    add_community: Community | None = None
    prepend_as_path: tuple[int, ...] | None = None
    set_priority: int | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.add_community is not None:
            return {"addCommunity": {"value": str(self.add_community)}}
        if self.prepend_as_path is not None:
            return {"prependASPath": {"prefix": list(self.prepend_as_path)}}
        return {"setPriority": {"value": self.set_priority}}


@record(frozen=True, slots=True)
class FilterRule:
    version: int
    action: str  # Accept or Reject
    cidr: IPNetwork | None = None
    match_operator: str | None = None  # Equal, NotEqual, In, NotIn (with cidr)
    prefix_length: tuple[int | None, int | None] | None = None  # (min, max)
    source: str | None = None  # RemotePeers
    interface: str | None = None
    peer_type: str | None = None  # eBGP or iBGP
    communities: tuple[Community, ...] = ()
    as_path_prefix: tuple[int, ...] = ()
    priority: int | None = None
    operations: tuple[FilterOperation, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        if self.cidr is not None:
            out["cidr"] = str(self.cidr)
        if self.match_operator is not None:
            out["matchOperator"] = self.match_operator
        if self.prefix_length is not None:
            lo, hi = self.prefix_length
            out["prefixLength"] = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        for key, value in (("source", self.source), ("interface", self.interface), ("peerType", self.peer_type),
                           ("priority", self.priority)):
            if value is not None:
                out[key] = value
        if self.communities:
            out["communities"] = {"values": [str(c) for c in self.communities]}
        if self.as_path_prefix:
            out["asPathPrefix"] = list(self.as_path_prefix)
        if self.operations:
            out["operations"] = [op.to_dict() for op in self.operations]
        return out


@record(frozen=True, kw_only=True)
class BGPFilter(Resource):
    kind: ClassVar[str] = "BGPFilter"
    aliases: ClassVar[tuple[str, ...]] = ("bgpfilter", "bgpfilters")

    export_v4: tuple[FilterRule, ...] = ()
    import_v4: tuple[FilterRule, ...] = ()
    export_v6: tuple[FilterRule, ...] = ()
    import_v6: tuple[FilterRule, ...] = ()

    @classmethod
    def read_spec(cls, spec: f.FieldReader, name: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, version in RULE_LISTS:
            rules = [_read_rule(r, version) for r in spec.items(key)]
            attr = ("export_v" if key.startswith("export") else "import_v") + str(version)
            out[attr] = tuple(r for r in rules if r is not None)
        return out

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        for key, rules in (("exportV4", self.export_v4), ("importV4", self.import_v4),
                           ("exportV6", self.export_v6), ("importV6", self.import_v6)):
            if rules:
                spec[key] = [r.to_dict() for r in rules]
        return spec


def _cidr(version: int) -> Any:
    def conv(value: Any) -> IPNetwork:
        text = f.string(value)
        if len(text) > CIDR_MAX[version]:
            raise ValueError(f"may not be longer than {CIDR_MAX[version]} characters")
        return f.network_v(version)(text)
    return conv


def _interface(value: Any) -> str:
    text = f.string(value)
    if text != "*" and not _INTERFACE.fullmatch(text):
        raise ValueError(f"{text!r} is not an interface name or pattern (1 to 15 of letters, digits, '_', '.', "
                         "'-', '*')")
    return text


def _community_match(value: Any) -> tuple[Community, ...]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping like {{values: ['65000:100']}}, got {f.describe(value)}")
    extra = sorted(set(value) - {"values"})
    if extra:
        raise FieldError(f".{extra[0]}", f.NOT_IMPLEMENTED)
    values = value.get("values")
    if not isinstance(values, list):
        raise FieldError(".values", "is required (a list holding one community)")
    if len(values) != 1:
        raise FieldError(".values", f"must hold exactly one community value, got {len(values)}")
    try:
        return (parse_community(values[0]),)
    except ValueError as exc:
        raise FieldError(".values[0]", str(exc)) from None


def _as_numbers(lo: int, hi: int | None) -> Any:
    def conv(value: Any) -> tuple[int, ...]:
        out = f.string_list(parse_as_number)(value)
        if len(out) < lo:
            raise ValueError(f"should have at least {lo} item{'s' if lo > 1 else ''}")
        if hi is not None and len(out) > hi:
            raise ValueError(f"must have at most {hi} items")
        return out
    return conv


def _read_operation(op: f.FieldReader) -> FilterOperation | None:
    given = [k for k in ("addCommunity", "prependASPath", "setPriority") if op.has(k)]
    if len(given) != 1:
        op.error("", "exactly one operation must be set (addCommunity, prependASPath or setPriority)")
    result: FilterOperation | None = None
    if op.has("addCommunity"):
        sub = op.sub("addCommunity")
        value = sub.get("value", parse_community, required=True)
        sub.finish()
        if value is not f.MISSING:
            result = FilterOperation(add_community=value)
    if op.has("prependASPath"):
        sub = op.sub("prependASPath")
        prefix = sub.get("prefix", _as_numbers(1, 10), required=True)
        sub.finish()
        if prefix is not f.MISSING:
            result = FilterOperation(prepend_as_path=prefix)
    if op.has("setPriority"):
        sub = op.sub("setPriority")
        value = sub.get("value", f.integer(1, PRIORITY_MAX), required=True)
        sub.finish()
        if value is not f.MISSING:
            result = FilterOperation(set_priority=value)
    op.finish()
    return result if len(given) == 1 else None


def _read_rule(rule: f.FieldReader, version: int) -> FilterRule | None:
    bits = 32 if version == 4 else 128
    errors_before = len(rule.errors)
    has_prefix_length = rule.has("prefixLength")
    prefix_length = None
    if has_prefix_length:
        pl = rule.sub("prefixLength")
        lo = pl.get("min", f.integer(0, bits))
        hi = pl.get("max", f.integer(0, bits))
        pl.finish()
        prefix_length = (lo, hi)
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            rule.warn("prefixLength", f"min {lo} is greater than max {hi}: the rule matches no route")
    ops = rule.items("operations", min_items=1, max_items=10)
    out = {
        "cidr": rule.get("cidr", _cidr(version)),
        "match_operator": rule.get("matchOperator", f.one_of(*MATCH_OPERATORS)),
        "source": rule.get("source", f.one_of("RemotePeers")),
        "interface": rule.get("interface", _interface),
        "peer_type": rule.get("peerType", f.one_of(*PEER_TYPES)),
        "communities": rule.get("communities", _community_match, ()),
        "as_path_prefix": rule.get("asPathPrefix", _as_numbers(0, None), ()),
        "priority": rule.get("priority", f.integer(1, PRIORITY_MAX)),
        "action": rule.get("action", f.one_of(*ACTIONS), required=True),
    }
    operations = tuple(o for o in (_read_operation(op) for op in ops) if o is not None)
    rule.finish()
    # the CRD's x-kubernetes-validations on a rule, in their words
    if (out["cidr"] is None) != (out["match_operator"] is None):
        rule.error("cidr" if out["cidr"] is None else "matchOperator",
                   "cidr and matchOperator must both be set or both be empty")
    if has_prefix_length and out["cidr"] is None:
        rule.error("prefixLength", "cidr is required when prefixLength is set")
    if ops and out["action"] != "Accept":
        rule.error("operations", "operations may only be used with action Accept")
    if len(rule.errors) != errors_before:
        return None
    return FilterRule(version=version, operations=operations, prefix_length=prefix_length, **out)
