"""Routing: host and longest path prefix of the normalized path to an origin."""

from __future__ import annotations

from dataclasses import dataclass

from failsmall.engine.paths import normalize_path
from failsmall.model.bundle import Bundle
from failsmall.model.traffic import Origin


class NoRouteError(Exception):
    """No route in the bundle matches the request's host and path."""


@dataclass(frozen=True)
class Router:
    """Routes sorted so that exact hosts beat `*` and longer prefixes beat shorter ones."""

    routes: tuple[tuple[str, str, Origin], ...]

    @classmethod
    def build(cls, bundle: Bundle) -> Router:
        origins = {o.id: o for o in bundle.origins}
        ordered = sorted(bundle.routes, key=lambda r: (r.host == "*", -len(r.path_prefix)))
        return cls(tuple((r.host.lower(), r.path_prefix, origins[r.origin]) for r in ordered))

    def route(self, host: str, path: str) -> Origin:
        """The origin for `host` and `path` (as received): prefixes are matched against the
        path as the origin resolves it, the one rules and rate limits read."""
        resolved = normalize_path(path)
        bare = host.lower().rsplit(":", 1)[0] if not host.startswith("[") else host.lower()
        for route_host, prefix, origin in self.routes:
            if route_host in ("*", bare) and resolved.startswith(prefix):
                return origin
        raise NoRouteError(
            f"no route for host {host!r} path {path!r} (resolved {resolved!r}); add one to routes"
        )
