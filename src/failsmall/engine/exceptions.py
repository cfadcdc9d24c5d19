"""Rule exceptions, compiled: which signature hits a request's scope lets through.

An exception selects rules (by id or tag) and a scope (hosts, paths, methods, fields). The WAF
applies them in one place, to the set of signature hits of a request: a hit of a selected rule
on a request in scope is dropped, or, when the exception names fields, dropped only if every
field the rule matched on is one of them. Everything after sees fewer hits, as if the rule had
not matched. Only signature rules can be excepted; the scopes cost nothing on requests none of
whose hits is of a selected rule, which is nearly all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from failsmall.engine.request import RequestView
from failsmall.engine.signatures.fields import matching_fields
from failsmall.engine.signatures.scanner import SignatureScanner
from failsmall.model.rules import Rule, RuleException


def glob_match(pattern: str, value: str) -> bool:
    """Exact match, or a prefix match when the pattern ends in `*`."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def host_match(pattern: str, host: str) -> bool:
    """Exact host, or `*.example.com` for any subdomain of example.com (not itself)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def request_host(view: RequestView) -> str:
    """The request's host, lowercase, without a port."""
    host = view.host.strip().lower()
    if host.startswith("["):  # an IPv6 literal: [::1]:8080
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]


@dataclass(frozen=True, slots=True)
class CompiledException:
    """One exception with its selected rules resolved to ids."""

    exception: RuleException
    rule_ids: frozenset[str]
    methods: frozenset[str]

    def in_scope(self, view: RequestView) -> bool:
        """Whether the request is in the exception's host, path and method scope."""
        exception = self.exception
        if self.methods and view.request.method.upper() not in self.methods:
            return False
        if exception.hosts:
            host = request_host(view)
            if not any(host_match(p.lower(), host) for p in exception.hosts):
                return False
        return not exception.paths or any(glob_match(p, view.request.path) for p in exception.paths)

    def forgives(self, fields: Iterable[str]) -> bool:
        """Whether a match on `fields` (the fields a rule matched on) is let through."""
        patterns = self.exception.fields
        if not patterns:
            return True
        names = list(fields)
        return bool(names) and all(any(glob_match(p, n) for p in patterns) for n in names)


@dataclass(frozen=True, slots=True)
class Exceptions:
    """The compiled exceptions of a bundle, and the union of the rules they select."""

    compiled: tuple[CompiledException, ...]
    rule_ids: frozenset[str]

    @classmethod
    def build(cls, exceptions: Iterable[RuleException], rules: Iterable[Rule]) -> Exceptions:
        rule_list = list(rules)
        compiled: list[CompiledException] = []
        for exception in exceptions:
            tags = set(exception.tags)
            ids = set(exception.rules) | {r.id for r in rule_list if tags.intersection(r.tags)}
            compiled.append(
                CompiledException(
                    exception, frozenset(ids), frozenset(m.upper() for m in exception.methods)
                )
            )
        selected = frozenset(i for c in compiled for i in c.rule_ids)
        return cls(tuple(compiled), selected)

    def __bool__(self) -> bool:
        return bool(self.compiled)

    def apply(
        self, view: RequestView, hits: frozenset[str], scanner: SignatureScanner
    ) -> frozenset[str]:
        """The hits left once the exceptions in scope have let theirs through."""
        candidates = hits & self.rule_ids
        if not candidates:
            return hits
        scoped = [c for c in self.compiled if c.rule_ids & candidates and c.in_scope(view)]
        if not scoped:
            return hits
        needs_fields = [c for c in scoped if c.exception.fields]
        fields = matching_fields(scanner, view, candidates) if needs_fields else {}
        dropped = {
            rule_id
            for rule_id in candidates
            if any(rule_id in c.rule_ids and c.forgives(fields.get(rule_id, ())) for c in scoped)
        }
        return hits - dropped if dropped else hits


NO_EXCEPTIONS = Exceptions((), frozenset())
