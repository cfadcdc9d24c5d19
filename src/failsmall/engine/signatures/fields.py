"""Which fields of a request made a signature rule match, by name (never by value).

The scanner answers "which rules hit this request"; for the few requests some rule hit, this
answers "on which field": `path`, `query`, `args.<name>`, `body.<name>`, `headers.<name>`,
`cookies.<name>`, `files`, `body`. The access log, `failsmall tune` and scoped exceptions use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, assert_never

from failsmall.engine.request import BodyFormat, Request, RequestView
from failsmall.engine.signatures.scanner import SignatureScanner
from failsmall.engine.signatures.targets import EXTRACTORS
from failsmall.model.rules import SignatureMatch, Target
from failsmall.model.traffic import Limits


class SignatureSource(Protocol):
    """What `signature_fields` needs of a compiled WAF."""

    @property
    def scanner(self) -> SignatureScanner | None: ...

    @property
    def signatures(self) -> dict[str, SignatureMatch]: ...


#: The field holding the whole body, when the body is not a form (XML, text, malformed JSON).
BODY_FIELD = "body"


def named_values(view: RequestView, target: Target) -> list[tuple[str, str]]:
    """The values of `target` in the request, each with the name of the field it comes from.

    The values are those `target_values` gives; a name-target's values are named after the
    field they name (`args.q` for the name `q`).
    """
    request = view.request
    match target:
        case Target.PATH:
            return [("path", request.path)]
        case Target.URI:
            return [("uri", request.uri)]
        case Target.QUERY:
            return [("query", request.query)] if request.query else []
        case Target.METHOD:
            return [("method", request.method)]
        case Target.ARG_NAMES:
            return [(f"args.{name}", name) for name in view.args]
        case Target.ARG_VALUES:
            return [(f"args.{name}", v) for name, values in view.args.items() for v in values]
        case Target.BODY:
            return [(BODY_FIELD, text) for text in EXTRACTORS[Target.BODY](view)]
        case Target.BODY_ARG_NAMES:
            return [(f"body.{name}", name) for name in view.body_arg_names]
        case Target.BODY_ARG_VALUES:
            if view.body.format in (BodyFormat.RAW, BodyFormat.MALFORMED):
                return [(BODY_FIELD, view.body_text)]
            return [(f"body.{name}", value) for name, value in view.body.fields]
        case Target.HEADER_NAMES:
            return [(f"headers.{name}", name) for name in view.header_names]
        case Target.HEADER_VALUES:
            return [
                (f"headers.{name.lower()}", value)
                for name, value in request.headers
                if name.lower() != "cookie"
            ]
        case Target.USER_AGENT:
            return [("headers.user-agent", v) for v in view.headers.get("user-agent", [])]
        case Target.REFERER:
            return [("headers.referer", v) for v in view.headers.get("referer", [])]
        case Target.COOKIE_NAMES:
            return [(f"cookies.{name}", name) for name in view.cookies]
        case Target.COOKIE_VALUES:
            return [(f"cookies.{n}", v) for n, values in view.cookies.items() for v in values]
        case Target.FILENAMES:
            return [("files", name) for name in view.filenames]
        case _:
            assert_never(target)


def matching_fields(
    scanner: SignatureScanner, view: RequestView, rule_ids: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """For each of `rule_ids`, the names of the fields on which its signatures hit, in request
    order, without repeats (a rule none of whose fields hit on its own is left out)."""
    wanted = frozenset(rule_ids)
    found: dict[str, dict[str, None]] = {}
    if not wanted:
        return {}
    for target in Target:
        for name, value in named_values(view, target):
            hits = scanner.value_hits(value, target) & wanted
            for rule_id in hits:
                found.setdefault(rule_id, {})[name] = None
    return {rule_id: tuple(names) for rule_id, names in found.items()}


def signature_fields(
    waf: SignatureSource, request: Request, matched: Iterable[str], limits: Limits
) -> dict[str, tuple[str, ...]] | None:
    """The fields each matched signature rule of a verdict matched on; None when no signature
    rule matched (the common case, which costs a set lookup per matched rule).

    `limits` are the bundle's, the ones the verdict was reached with: they decide how the body
    is decoded and parsed, so with any others the fields named could be other fields."""
    rules = [rule for rule in matched if rule in waf.signatures]
    if not rules or waf.scanner is None:
        return None
    return matching_fields(waf.scanner, RequestView(request, limits=limits), rules)
