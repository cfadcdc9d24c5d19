"""The request path the way the origin will resolve it: one function for rules, routes and
rate-limit keys.

`normalize_path` turns the path as received into the path an origin serves:

1. percent-escapes are decoded **once** (`%61` -> `a`, `%2F` -> `/`, `%2e%2e` -> `..`), as
   nginx and uvicorn decode them before routing; a run of escapes is read as
   UTF-8, invalid sequences becoming U+FFFD. The percent sign itself stays written `%25` (from
   `%25` or from a stray `%`), so a double-encoded `%2561` reads `%2561`, never `a`: the
   result means the same thing when normalized again (idempotent), and a rule that wants to see
   double encoding reads `raw.http.request.uri.path`;
2. backslashes are slashes (IIS, and Cloudflare's normalization);
3. repeated slashes are merged (nginx's `merge_slashes`);
4. path parameters are dropped from every segment (`/admin;jsessionid=1` -> `/admin`,
   `/x/..;/admin` -> `/admin`), the way Servlet containers (Tomcat, Jetty, so Spring) read
   them; for other origins `/admin;x` is another resource, usually missing, so a rule for
   `/admin` matching it blocks nothing they would serve;
5. dot segments are removed (RFC 3986 section 5.2.4), after all of the above, so `%2e%2e`
   and `..;x` count.

The result always starts with `/` (`*`, the target of `OPTIONS *`, stays `*`) and keeps a
trailing slash. A path that none of these steps would change is returned as it is, at the cost
of five substring checks.
"""

from __future__ import annotations

import re
from typing import Final

_ESCAPES: Final = re.compile(r"((?:%[0-9A-Fa-f]{2})+)")
#: Last segments after which the path names a directory: `/a/`, `/a/.`, `/a/b/..`.
_LAST_OF_A_DIRECTORY: Final = frozenset({"", ".", ".."})


def normalize_path(raw: str) -> str:
    """The path `raw` (as received, percent-encoded) as the origin will resolve it."""
    if raw[:1] == "/" and not (
        "%" in raw or "\\" in raw or "//" in raw or "/." in raw or ";" in raw
    ):
        return raw
    if raw == "*":
        return raw
    segments: list[str] = []
    names = [
        part.split(";", 1)[0] for part in percent_decode_once(raw).replace("\\", "/").split("/")
    ]
    for name in names:
        if name == "..":
            if segments:
                segments.pop()
        elif name and name != ".":
            segments.append(name)
    trailing = "/" if segments and names[-1] in _LAST_OF_A_DIRECTORY else ""
    return "/" + "/".join(segments) + trailing


def percent_decode_once(text: str) -> str:
    """`text` with every percent-escape decoded once (runs of escapes read as UTF-8, invalid
    sequences replaced), and every percent sign of the result written `%25`."""
    pieces = _ESCAPES.split(text)
    for index in range(1, len(pieces), 2):
        pieces[index] = bytes.fromhex(pieces[index].replace("%", "")).decode("utf-8", "replace")
    return "".join(piece.replace("%", "%25") for piece in pieces)
