"""Where each signature target's values come from in a request."""

from __future__ import annotations

from collections.abc import Callable
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
#: The targets of the request head: every one but those of the body.
HEAD_TARGETS = frozenset(Target) - BODY_TARGETS


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
