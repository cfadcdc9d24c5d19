"""Where each signature target's values come from in a request."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import assert_never

from failsmall.engine.request import BodyFormat, RequestView
from failsmall.model.rules import Target


def target_values(view: RequestView, target: Target) -> list[str]:
    """The values of `target` in this request, before any transform (possibly none).

    `BODY` is the body text, except for multipart bodies (see `_raw_body`). `HEADER_VALUES`
    leaves out the Cookie header: cookies are matched parsed, through `COOKIE_NAMES` and
    `COOKIE_VALUES`. `BODY_ARG_VALUES` is the body's parsed fields, or the whole body text when
    it is not a form (XML, plain text, malformed JSON).
    """
    return EXTRACTORS[target](view)


Extractor = Callable[[RequestView], list[str]]

EXTRACTORS: dict[Target, Extractor] = {
    Target.PATH: lambda view: [view.request.path],
    Target.URI: lambda view: [view.request.uri],
    Target.QUERY: lambda view: [view.request.query] if view.request.query else [],
    Target.ARG_NAMES: lambda view: list(view.args),
    Target.ARG_VALUES: lambda view: [v for values in view.args.values() for v in values],
    Target.BODY: lambda view: _raw_body(view),
    Target.BODY_ARG_NAMES: lambda view: view.body_arg_names,
    Target.BODY_ARG_VALUES: lambda view: _raw_body_or_values(view),
    Target.HEADER_NAMES: lambda view: view.header_names,
    Target.HEADER_VALUES: lambda view: [
        value for name, value in view.request.headers if name.lower() != "cookie"
    ],
    Target.USER_AGENT: lambda view: view.headers.get("user-agent", []),
    Target.REFERER: lambda view: view.headers.get("referer", []),
    Target.COOKIE_NAMES: lambda view: list(view.cookies),
    Target.COOKIE_VALUES: lambda view: [v for values in view.cookies.values() for v in values],
    Target.METHOD: lambda view: [view.request.method],
    Target.FILENAMES: lambda view: view.filenames,
}
#: The targets whose values come from the body: a request without a body has none.
BODY_TARGETS = frozenset(
    {Target.BODY, Target.BODY_ARG_NAMES, Target.BODY_ARG_VALUES, Target.FILENAMES}
)
_MISSING = set(Target) - set(EXTRACTORS)
if _MISSING:
    raise ImportError(f"signature targets without an extractor: {sorted(_MISSING)}")


#: Each target's bit in a target mask: a value's targets are the mask of those it comes from.
TARGET_BIT: dict[Target, int] = {target: 1 << index for index, target in enumerate(Target)}
_PATH, _URI, _QUERY, _METHOD = (
    TARGET_BIT[t] for t in (Target.PATH, Target.URI, Target.QUERY, Target.METHOD)
)
_ARG_NAMES, _ARG_VALUES = TARGET_BIT[Target.ARG_NAMES], TARGET_BIT[Target.ARG_VALUES]
_HEADER_NAMES, _HEADER_VALUES = TARGET_BIT[Target.HEADER_NAMES], TARGET_BIT[Target.HEADER_VALUES]
_USER_AGENT, _REFERER = TARGET_BIT[Target.USER_AGENT], TARGET_BIT[Target.REFERER]
_COOKIE_NAMES, _COOKIE_VALUES = TARGET_BIT[Target.COOKIE_NAMES], TARGET_BIT[Target.COOKIE_VALUES]
_FROM_HEADERS = _HEADER_NAMES | _HEADER_VALUES | _USER_AGENT | _REFERER
#: The targets `collect` reads: every one but those of the body.
HEAD_TARGETS = frozenset(Target) - BODY_TARGETS


def sources_of(view: RequestView, targets: Iterable[Target]) -> dict[str, int]:
    """Every value of `targets` in this request, with the mask of the targets it is a value
    of: the definition, target by target, that `collect` computes in one pass."""
    sources: dict[str, int] = {}
    for target in targets:
        bit = TARGET_BIT[target]
        for value in EXTRACTORS[target](view):
            sources[value] = sources.get(value, 0) | bit
    return sources


def collect(view: RequestView, mask: int) -> dict[str, int]:
    """`sources_of(view, targets)` for the `HEAD_TARGETS` whose bits are in `mask`, in one pass
    over the request's parts, without a list per target: header values are read once for the
    header, user agent and referer targets, arguments once for their names and values."""
    request = view.request
    sources: dict[str, int] = {}
    seen = sources.get
    if mask & _PATH:
        sources[request.path] = _PATH
    if mask & _URI:
        uri = request.uri
        sources[uri] = seen(uri, 0) | _URI
    query = request.query
    if mask & _QUERY and query:
        sources[query] = seen(query, 0) | _QUERY
    if mask & _METHOD:
        sources[request.method] = seen(request.method, 0) | _METHOD
    if mask & (_ARG_NAMES | _ARG_VALUES) and query:
        _add_fields(sources, view.args, mask & _ARG_NAMES, mask & _ARG_VALUES)
    if mask & _FROM_HEADERS and request.headers:
        names_bit, values_bit = mask & _HEADER_NAMES, mask & _HEADER_VALUES
        agent_bit, referer_bit = mask & _USER_AGENT, mask & _REFERER
        for name, values in view.headers.items():
            if names_bit:
                sources[name] = seen(name, 0) | names_bit
            if name == "cookie":
                continue  # matched parsed, through the cookie targets
            bits = values_bit
            if name == "user-agent":
                bits |= agent_bit
            elif name == "referer":
                bits |= referer_bit
            if bits:
                for value in values:
                    sources[value] = seen(value, 0) | bits
    if mask & (_COOKIE_NAMES | _COOKIE_VALUES) and request.headers:
        _add_fields(sources, view.cookies, mask & _COOKIE_NAMES, mask & _COOKIE_VALUES)
    return sources


def _add_fields(
    sources: dict[str, int], fields: dict[str, list[str]], names_bit: int, values_bit: int
) -> None:
    seen = sources.get
    for name, values in fields.items():
        if names_bit:
            sources[name] = seen(name, 0) | names_bit
        if values_bit:
            for value in values:
                sources[value] = seen(value, 0) | values_bit


def _raw_body(view: RequestView) -> list[str]:
    """The body text; for multipart, nothing: its fields and filenames are targets of their own,
    and file contents are data, not request syntax."""
    match view.body.format:
        case BodyFormat.MULTIPART | BodyFormat.EMPTY:
            return []
        case BodyFormat.URLENCODED | BodyFormat.JSON | BodyFormat.RAW | BodyFormat.MALFORMED:
            return [view.body_text]
        case _:
            assert_never(view.body.format)


def _raw_body_or_values(view: RequestView) -> list[str]:
    """Parsed field values; a body that is not a form (XML, text, malformed JSON) is one value."""
    match view.body.format:
        case BodyFormat.URLENCODED | BodyFormat.JSON | BodyFormat.MULTIPART:
            return view.body_arg_values
        case BodyFormat.RAW | BodyFormat.MALFORMED:
            return [view.body_text]
        case BodyFormat.EMPTY:
            return []
        case _:
            assert_never(view.body.format)
