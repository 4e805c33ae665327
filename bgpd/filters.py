"""BGPFilter rules, compiled per peer: which routes a peer's import and export accept or reject, and
what an Accept rule changes.

Calico's semantics (confd v3.32: `pkg/resource/template/template_funcs.go` BGPFilterBIRDFuncs and
`pkg/backends/calico/bgp_processor.go` buildImportFilter / buildExportFilter; see
docs/configuration.md *BGPFilter*):

- A BGPPeer's `filters` are tried in the order it names them, and each filter's rules in their order
  (the list of the route's family and the direction: `importV4`, `exportV6`, ...). The first rule
  whose conditions all hold decides: Reject drops the route; Accept applies the rule's operations
  and takes the route, skipping the default policy. No rule matching leaves the route to the
  default policy (tortie's pools on import; Calico's export policy on export).
- Conditions: CIDR with its operator and prefix-length range, `source: RemotePeers` (the route was
  learned from BGP, not originated here), `interface` (the interface towards the route's next hop),
  `peerType` (eBGP or iBGP: the peer's AS against the session's own), a community or large
  community, an AS-path prefix, and a priority (LOCAL_PREF 2^31-1-priority).
- Operations, in order: add a community, prepend AS numbers, set the priority.

A rule with `peerType` applies only to peers of that type, so a chain is compiled per peer: peers with
equal chains share an update group. The CIDR conditions are per prefix and everything else is per
attribute set, so a chain splits a prefix into a small class (which rules' CIDR conditions hold) and
decides once per (attribute set, class): `prefix_class` then `decide`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import field, replace

from bgpd.route_match import (
    CidrMatch,
    add_communities,
    as_path_starts_with,
    has_community,
    interface_matches,
    local_pref_of_priority,
    prepend_path,
    standard_community,
)
from proto import prefix as pf
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, AfiSafi
from proto.bgp.model import PathAttributes
from proto.record import record
from proto.resources import BGPFilter, FilterOperation, FilterRule

IMPORT, EXPORT = "import", "export"
RULE_LISTS = {(IMPORT, 4): "importV4", (IMPORT, 6): "importV6", (EXPORT, 4): "exportV4", (EXPORT, 6): "exportV6"}
InterfaceOf = Callable[[str], "str | None"]  # next hop address -> the interface the kernel reaches it on


@record(frozen=True, slots=True)
class Rule:
    where: str  # "BGPFilter tor-in importV4 rule 2", for reasons the operator reads
    accept: bool
    cidr: CidrMatch | None = None
    remote_only: bool = False  # source: RemotePeers
    interface: str | None = None
    community: tuple[int, ...] | None = None  # (aa, nn) or (aa, nn, mm)
    as_path_prefix: tuple[int, ...] = ()
    local_pref: int | None = None  # the rule's priority, as LOCAL_PREF
    operations: tuple[FilterOperation, ...] = ()

    def holds(self, attrs: PathAttributes, local_pref: int, remote: bool, interface: str | None) -> bool:
        """The rule's conditions other than its CIDR."""
        if self.remote_only and not remote:
            return False
        if self.interface is not None and not interface_matches(self.interface, interface):
            return False
        if self.community is not None and not has_community(attrs, self.community):
            return False
        if self.as_path_prefix and not as_path_starts_with(attrs.as_path, self.as_path_prefix):
            return False
        return self.local_pref is None or self.local_pref == local_pref

    def apply(self, attrs: PathAttributes) -> PathAttributes:
        """The Accept rule's operations, in order."""
        for op in self.operations:
            if op.add_community is not None:
                parts = op.add_community.parts
                if len(parts) == 3:
                    attrs = add_communities(attrs, large=[(parts[0], parts[1], parts[2])])
                else:
                    attrs = add_communities(attrs, standard=[standard_community(parts)])
            elif op.prepend_as_path is not None:
                attrs = replace(attrs, as_path=prepend_path(attrs.as_path, op.prepend_as_path))
            elif op.set_priority is not None:
                attrs = replace(attrs, local_pref=local_pref_of_priority(op.set_priority))
        return attrs

    def describe(self) -> str:
        text = f"{'accepted' if self.accept else 'rejected'} by {self.where}"
        done = []
        for op in self.operations:
            if op.add_community is not None:
                done.append(f"add community {op.add_community}")
            elif op.prepend_as_path is not None:
                done.append("prepend " + " ".join(map(str, op.prepend_as_path)))
            elif op.set_priority is not None:
                done.append(f"priority {op.set_priority}")
        return text + (f" ({', '.join(done)})" if done else "")


@record(frozen=True, slots=True)
class Verdict:
    """What the first matching rule decided: `attrs` is the route's attribute set after the rule's
    operations, None when the rule rejects it."""

    rule: Rule
    attrs: PathAttributes | None

    @property
    def accepted(self) -> bool:
        return self.attrs is not None

    @property
    def reason(self) -> str:
        return self.rule.describe()


@record(frozen=True, slots=True)
class RuleChain:
    """One peer's rules for one direction and family, in the order they are tried."""

    rules: tuple[Rule, ...]
    uses_interface: bool = field(default=False, compare=False)
    # prefix_class, compiled: the bits that hold for every prefix, and one test per rule whose CIDR
    # condition depends on the prefix (it runs per prefix: one call per rule, not two)
    always: int = field(default=0, compare=False)
    tests: tuple[tuple[int, Callable[[bytes], bool]], ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> RuleChain:
        rs = tuple(rules)
        always = 0
        tests: list[tuple[int, Callable[[bytes], bool]]] = []
        for i, rule in enumerate(rs):
            bit, cidr = 1 << i, rule.cidr
            if cidr is None:
                always |= bit
            elif cidr.length_range is not None and cidr.operator in ("Equal", "NotEqual"):
                always |= bit if cidr.operator == "NotEqual" else 0  # never equal to a prefix set
            elif cidr.operator == "Equal":
                tests.append((bit, cidr.network.__eq__))
            elif cidr.operator == "NotEqual":
                tests.append((bit, cidr.network.__ne__))
            elif cidr.operator == "In" and cidr.inside is not None:
                tests.append((bit, cidr.inside))
            else:
                tests.append((bit, cidr))
        return cls(rs, any(r.interface is not None for r in rs), always, tuple(tests))

    def prefix_class(self, prefix: bytes) -> int:
        """Bit i: rule i's CIDR condition holds for `prefix` (always, for a rule without one)."""
        cls = self.always
        for bit, test in self.tests:
            if test(prefix):
                cls |= bit
        return cls

    def decide(self, cls: int, attrs: PathAttributes, local_pref: int, remote: bool,
               interface: str | None = None) -> Verdict | None:
        """The first rule whose CIDR condition is in `cls` and whose other conditions hold; None: no
        rule matched, the default policy decides."""
        for i, rule in enumerate(self.rules):
            if cls >> i & 1 and rule.holds(attrs, local_pref, remote, interface):
                return Verdict(rule, rule.apply(attrs) if rule.accept else None)
        return None


def _rule(flt: BGPFilter, list_name: str, index: int, r: FilterRule) -> Rule:
    cidr = CidrMatch.of(pf.from_network(r.cidr), r.match_operator or "In", r.prefix_length) \
        if r.cidr is not None else None
    return Rule(
        where=f"BGPFilter {flt.name} {list_name} rule {index + 1}",
        accept=r.action == "Accept",
        cidr=cidr,
        remote_only=r.source == "RemotePeers",
        interface=r.interface,
        community=r.communities[0].parts if r.communities else None,
        as_path_prefix=tuple(r.as_path_prefix),
        local_pref=local_pref_of_priority(r.priority) if r.priority is not None else None,
        operations=tuple(r.operations),
    )


def compile_chain(filters: Sequence[BGPFilter], direction: str, version: int, ebgp: bool) -> RuleChain | None:
    """The rules a peer of this type runs, from the filters its BGPPeer names, in order; None when
    there are none (the default policy alone)."""
    list_name = RULE_LISTS[direction, version]
    attr = ("import_v" if direction == IMPORT else "export_v") + str(version)
    rules: list[Rule] = []
    for flt in filters:
        for i, r in enumerate(getattr(flt, attr)):
            if r.peer_type is not None and (r.peer_type == "eBGP") != ebgp:
                continue  # confd's `if (is_same_as)` / `if (!is_same_as)` guard
            rules.append(_rule(flt, list_name, i, r))
    return RuleChain.of(rules) if rules else None


@record(frozen=True, slots=True)
class FamilyChains:
    """A peer's chains for one direction, per family: part of its export target when exporting, so
    equal chains mean a shared update group."""

    v4: RuleChain | None = None
    v6: RuleChain | None = None

    def get(self, family: AfiSafi) -> RuleChain | None:
        if family == IPV4_UNICAST:
            return self.v4
        if family == IPV6_UNICAST:
            return self.v6
        return None

    def __bool__(self) -> bool:
        return self.v4 is not None or self.v6 is not None


def peer_chains(filters: Sequence[BGPFilter], direction: str, ebgp: bool) -> FamilyChains | None:
    chains = FamilyChains(compile_chain(filters, direction, 4, ebgp), compile_chain(filters, direction, 6, ebgp))
    return chains if chains else None
