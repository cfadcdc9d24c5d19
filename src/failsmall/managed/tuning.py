"""Tuning: from logged false positives to the narrowest rule exception, and what it would let
through among known attacks.

A logged false positive is a blocked request, as the access log or `failsmall inspect --json`
records it: method, host, path, the rules that matched and, per signature rule, the fields it
matched on (names only). The narrowest exception for it selects exactly those rules, on that
host, path and method, and on those fields only. Requests logged with the same host, path,
method and rules share one proposal, whose fields are the union of theirs.

What an exception would let through is measured, not guessed: each known attack is replayed
in the exception's scope (its host, path and method; for an `args.<name>` or `body.<name>`
field, with each query and form value of the attack alone in that parameter too), through the
engine with and without the exception. An attack blocked without it and let through with it is
a cost of accepting it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

from failsmall.build.corpus import CorpusError
from failsmall.engine import Decision, Engine, Request
from failsmall.model.bundle import Bundle
from failsmall.model.rules import RuleException

TUNE_ID_PREFIX = "tune-"


@dataclass(frozen=True, slots=True)
class LoggedBlock:
    """One blocked request from a log: where it went, and what matched it on which fields."""

    method: str
    host: str
    path: str
    fields: dict[str, tuple[str, ...]]


def read_logged_blocks(lines: Iterable[str], where: str) -> Iterator[LoggedBlock]:
    """The blocked requests of access log lines or `inspect --json` lines that name their
    signature rules' fields. Lines of other requests are skipped; a line that is not a JSON
    object raises CorpusError naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}:{number}: not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CorpusError(f"{where}:{number}: a log line must be a JSON object")
        fields = data.get("fields")
        if data.get("decision") != Decision.BLOCK.value or not isinstance(fields, dict):
            continue
        yield LoggedBlock(
            method=str(data.get("method", "")).upper(),
            host=str(data.get("host", "")).lower().partition(":")[0],
            path=str(data.get("path", "")),
            fields={str(rule): tuple(map(str, names)) for rule, names in fields.items()},
        )


@dataclass
class Proposal:
    """A proposed exception and the logged requests it would let through."""

    exception: RuleException
    requests: int


def propose(blocks: Iterable[LoggedBlock], author: str, reason: str) -> list[Proposal]:
    """The narrowest exception for each group of logged blocks (same host, path, method and
    rules), most frequent first."""
    groups: dict[tuple[str, str, str, tuple[str, ...]], tuple[dict[str, None], int]] = {}
    for block in blocks:
        key = (block.host, block.path, block.method, tuple(sorted(block.fields)))
        names, count = groups.get(key, ({}, 0))
        for rule_fields in block.fields.values():
            names.update(dict.fromkeys(rule_fields))
        groups[key] = (names, count + 1)
    proposals = []
    for (host, path, method, rules), (names, count) in groups.items():
        digest = hashlib.sha256(repr((host, path, method, rules)).encode()).hexdigest()[:10]
        exception = RuleException(
            id=TUNE_ID_PREFIX + digest,
            reason=reason,
            author=author,
            rules=list(rules),
            hosts=[host] if host else [],
            paths=[path] if path else [],
            methods=[method] if method else [],
            fields=sorted(names),
        )
        proposals.append(Proposal(exception, count))
    return sorted(proposals, key=lambda p: -p.requests)


@dataclass(frozen=True, slots=True)
class KnownAttack:
    """An attack request of a corpus, with the name and family it is reported under."""

    name: str
    family: str
    request: Request


@dataclass
class Exposure:
    """What an exception lets through among known attacks replayed in its scope."""

    attacks: int = 0
    blocked_without: int = 0
    let_through: list[KnownAttack] = field(default_factory=list)

    def by_family(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for attack in self.let_through:
            counts[attack.family] = counts.get(attack.family, 0) + 1
        return dict(sorted(counts.items()))


def in_scope(attack: Request, exception: RuleException) -> list[Request]:
    """The attack replayed in the exception's scope: moved to its host, path and method; and
    for each `args.<name>` (or `body.<name>`) field, each of the attack's query and form values
    alone in query parameter (or form field) <name>."""
    host = exception.hosts[0].removeprefix("*.") if exception.hosts else attack.host
    path = exception.paths[0].rstrip("*") or "/" if exception.paths else attack.path
    method = exception.methods[0] if exception.methods else attack.method
    headers = tuple((k, v) for k, v in attack.headers if k.lower() != "host")
    if host:
        headers = (("Host", host), *headers)
    moved = [_request(attack, method, path, attack.query, headers, attack.body, host)]
    values = [part.partition("=")[2] for part in attack.query.split("&") if "=" in part]
    if _is_form(attack):
        body = attack.body.decode("utf-8", errors="replace")
        values += [part.partition("=")[2] for part in body.split("&") if "=" in part]
    bare = tuple((k, v) for k, v in headers if k.lower() != "content-type")
    form = (*bare, ("Content-Type", "application/x-www-form-urlencoded"))
    for field_name in exception.fields:
        scope, _, name = field_name.partition(".")
        if not name or name.endswith("*") or (scope == "body" and "." in name):
            continue
        for value in values:
            pair = f"{quote(name)}={value}"
            if scope == "args":
                moved.append(_request(attack, method, path, pair, bare, b"", host))
            elif scope == "body":
                moved.append(_request(attack, method, path, "", form, pair.encode(), host))
    return moved


def _is_form(request: Request) -> bool:
    for name, value in request.headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"
    return bool(request.body) and request.body[:1] not in (b"{", b"[", b"<")


def _request(
    attack: Request,
    method: str,
    path: str,
    query: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    host: str,
) -> Request:
    return Request(
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        body_truncated=attack.body_truncated and body == attack.body,
        client_ip=attack.client_ip,
        host=host,
        now=attack.now,
    )


def exposure(
    bundle: Bundle, exception: RuleException, attacks: Iterable[KnownAttack], base: Engine
) -> Exposure:
    """Replay `attacks` in the exception's scope through `base` (the bundle's engine) and
    through the same bundle with the exception added."""
    excepted = bundle.model_copy(update={"exceptions": [*bundle.exceptions, exception]})
    engine = Engine.build(Bundle.model_validate(excepted.model_dump()), reuse=base)
    before, after = base.new_state(seed=0), engine.new_state(seed=0)
    result = Exposure()
    for attack in attacks:
        result.attacks += 1
        blocked = False
        for request in in_scope(attack.request, exception):
            if base.evaluate(request, before).decision is not Decision.BLOCK:
                continue
            blocked = True
            if engine.evaluate(request, after).decision is not Decision.BLOCK:
                result.let_through.append(attack)
                break
        result.blocked_without += blocked
    return result
