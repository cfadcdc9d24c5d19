"""The bundle: one immutable version of all fleet configuration."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from failsmall.model.base import Strict
from failsmall.model.bot import BotConfig
from failsmall.model.rules import Override, Phase, RuleException, RuleId, Ruleset
from failsmall.model.traffic import (
    CacheConfig,
    Capacities,
    FaultConfig,
    Limits,
    ModuleName,
    ModuleSettings,
    Origin,
    RateLimit,
    Route,
    default_modules,
)

SCHEMA_VERSION = 1


class Bundle(Strict):
    """All configuration a node serves with. Content-addressed and signed as an envelope."""

    schema_version: Literal[1] = 1
    name: str = Field(default="bundle", min_length=1, max_length=200)
    description: str = ""
    rulesets: list[Ruleset] = Field(default_factory=list)
    phases: dict[Phase, RuleId] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)
    exceptions: list[RuleException] = Field(default_factory=list)
    """Signature matches let through in a narrow scope (false positives tuned away)."""
    ip_lists: dict[RuleId, list[str]] = Field(default_factory=dict)
    trusted_proxies: list[str] = Field(default_factory=list)
    """Load balancers in front of the edge (IPs or CIDRs): a request from one of them takes its
    client address from X-Forwarded-For."""
    bot: BotConfig = Field(default_factory=BotConfig)
    rate_limits: list[RateLimit] = Field(default_factory=list)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    origins: list[Origin] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    fault: FaultConfig = Field(default_factory=FaultConfig)
    modules: dict[ModuleName, ModuleSettings] = Field(default_factory=default_modules)
    requires: Capacities = Field(default_factory=Capacities)

    @field_validator("ip_lists")
    @classmethod
    def _networks(cls, lists: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, entries in lists.items():
            _check_networks(entries, f"ip list {name!r}")
        return lists

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, entries: list[str]) -> list[str]:
        _check_networks(entries, "trusted_proxies")
        return entries

    @field_validator("modules")
    @classmethod
    def _all_modules(
        cls, modules: dict[ModuleName, ModuleSettings]
    ) -> dict[ModuleName, ModuleSettings]:
        merged = {**default_modules(), **modules}
        waf = merged[ModuleName.WAF]
        if "while_open" not in waf.model_fields_set:  # the WAF's own default (fail closed)
            merged[ModuleName.WAF] = waf.model_copy(
                update={"while_open": default_modules()[ModuleName.WAF].while_open}
            )
        return merged

    @model_validator(mode="after")
    def _references(self) -> Bundle:
        problems = reference_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def ruleset(self, ruleset_id: str) -> Ruleset:
        for ruleset in self.rulesets:
            if ruleset.id == ruleset_id:
                return ruleset
        raise KeyError(ruleset_id)


def reference_problems(bundle: Bundle) -> list[str]:
    """Every dangling reference, duplicate id, execute cycle and capacity overrun in a bundle."""
    problems: list[str] = []
    ruleset_ids = [rs.id for rs in bundle.rulesets]
    problems += [f"duplicate ruleset id {i!r}" for i in _dupes(ruleset_ids)]
    rule_ids = [r.id for rs in bundle.rulesets for r in rs.rules]
    problems += [f"duplicate rule id {i!r}" for i in _dupes(rule_ids)]
    known_rulesets = set(ruleset_ids)
    known_rules = set(rule_ids)
    for phase, entry in bundle.phases.items():
        if entry not in known_rulesets:
            problems.append(f"phase {phase.value} points at unknown ruleset {entry!r}")
    edges: dict[str, set[str]] = {rs.id: set() for rs in bundle.rulesets}
    for rs in bundle.rulesets:
        for rule in rs.rules:
            action = rule.action
            if action.type == "execute":
                if action.ruleset not in known_rulesets:
                    problems.append(f"rule {rule.id!r} executes unknown ruleset {action.ruleset!r}")
                else:
                    edges[rs.id].add(action.ruleset)
                for target in action.overrides.rules:
                    if target not in known_rules:
                        problems.append(f"rule {rule.id!r} overrides unknown rule {target!r}")
            elif action.type == "skip":
                for target in action.rulesets:
                    if target not in known_rulesets:
                        problems.append(f"rule {rule.id!r} skips unknown ruleset {target!r}")
    cycle = _find_cycle(edges)
    if cycle:
        problems.append("execute cycle: " + " -> ".join(cycle))
    for override in bundle.overrides:
        if override.rule not in known_rules:
            problems.append(f"override targets unknown rule {override.rule!r}")
    problems += [
        f"duplicate override for rule {i!r}" for i in _dupes([o.rule for o in bundle.overrides])
    ]
    problems += exception_problems(bundle)
    origin_ids = [o.id for o in bundle.origins]
    problems += [f"duplicate origin id {i!r}" for i in _dupes(origin_ids)]
    for route in bundle.routes:
        if route.origin not in origin_ids:
            problems.append(f"route {route.host}{route.path_prefix} uses unknown origin")
    problems += [
        f"duplicate rate limit id {i!r}" for i in _dupes([r.id for r in bundle.rate_limits])
    ]
    problems += capacity_problems(bundle, bundle.requires)
    return problems


def exception_problems(bundle: Bundle) -> list[str]:
    """Exceptions with a duplicate id, a rule without signatures (exceptions let signature
    matches through; other rules take an override), or a tag no signature rule carries."""
    rules = [r for rs in bundle.rulesets for r in rs.rules if r.match is not None]
    known_rules = {r.id for r in rules}
    known_tags = {t for r in rules for t in r.tags}
    problems = [f"duplicate exception id {i!r}" for i in _dupes([e.id for e in bundle.exceptions])]
    for exception in bundle.exceptions:
        problems += [
            f"exception {exception.id!r} names rule {rule!r}, which is not a signature rule"
            for rule in exception.rules
            if rule not in known_rules
        ]
        problems += [
            f"exception {exception.id!r} names tag {tag!r}, which no signature rule carries"
            for tag in exception.tags
            if tag not in known_tags
        ]
    return problems


def capacity_problems(bundle: Bundle, capacities: Capacities) -> list[str]:
    """What in `bundle` does not fit in `capacities` (a node's, or the bundle's own `requires`)."""
    problems: list[str] = []
    slots = bundle.bot.feature_file.slots
    if slots > capacities.bot_feature_slots:
        problems.append(
            f"bot feature file has {slots} features but the capacity is "
            f"{capacities.bot_feature_slots} slots"
        )
    rules = sum(len(rs.rules) for rs in bundle.rulesets)
    if rules > capacities.max_rules:
        problems.append(f"bundle has {rules} rules but the capacity is {capacities.max_rules}")
    if bundle.limits.waf_body_buffer > capacities.max_body_buffer:
        problems.append(
            f"waf_body_buffer {bundle.limits.waf_body_buffer} exceeds the capacity "
            f"{capacities.max_body_buffer}"
        )
    return problems


def _dupes(items: list[str]) -> list[str]:
    seen: set[str] = set()
    dupes: list[str] = []
    for item in items:
        if item in seen and item not in dupes:
            dupes.append(item)
        seen.add(item)
    return dupes


def _find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """A cycle in the execute graph as a path, or an empty list when the graph is acyclic."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt, white) == grey:
                return [*stack[stack.index(nxt) :], nxt]
            if colour.get(nxt, white) == white:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = black
        return []

    for start in sorted(edges):
        if colour[start] == white:
            found = visit(start)
            if found:
                return found
    return []


def _check_networks(entries: list[str], where: str) -> None:
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ValueError(f"{where}: {entry!r} is not an IP or CIDR") from exc
