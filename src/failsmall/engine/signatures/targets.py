"""Where each signature target's values come from in a request."""

from __future__ import annotations

from typing import assert_never

from failsmall.engine.request import BodyFormat, RequestView
from failsmall.model.rules import Target


def target_values(view: RequestView, target: Target) -> list[str]:
    """The values of `target` in this request, before any transform (possibly none).

    `BODY` is the body text, except for multipart bodies (see `_raw_body`). `HEADER_VALUES`
    leaves out the Cookie header: cookies are matched parsed, through
    `COOKIE_NAMES` and `COOKIE_VALUES`. `BODY_ARG_VALUES` is the body's parsed fields, or the
    whole body text when it is not a form (XML, plain text, malformed JSON).
    """
    match target:
        case Target.PATH:
            return [view.request.path]
        case Target.URI:
            return [view.request.uri]
        case Target.QUERY:
            return [view.request.query] if view.request.query else []
        case Target.ARG_NAMES:
            return list(view.args)
        case Target.ARG_VALUES:
            return [value for values in view.args.values() for value in values]
        case Target.BODY:
            return _raw_body(view)
        case Target.BODY_ARG_NAMES:
            return view.body_arg_names
        case Target.BODY_ARG_VALUES:
            return _raw_body_or_values(view)
        case Target.HEADER_NAMES:
            return view.header_names
        case Target.HEADER_VALUES:
            return [value for name, value in view.request.headers if name.lower() != "cookie"]
        case Target.USER_AGENT:
            return view.headers.get("user-agent", [])
        case Target.REFERER:
            return view.headers.get("referer", [])
        case Target.COOKIE_NAMES:
            return list(view.cookies)
        case Target.COOKIE_VALUES:
            return [value for values in view.cookies.values() for value in values]
        case Target.METHOD:
            return [view.request.method]
        case Target.FILENAMES:
            return view.filenames
        case _:
            assert_never(target)


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
