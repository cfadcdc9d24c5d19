"""Routing: host and longest path prefix of the normalized path to an origin.

The engine routes a request before anything else (see `Engine.evaluate`): a request for a host
or path the bundle does not route is answered at the cost of this lookup, without running the
pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from failsmall.model.bundle import Bundle
from failsmall.model.traffic import Origin


@dataclass(frozen=True, slots=True)
class Routed:
    """The request goes to `origin`."""

    origin: Origin


@dataclass(frozen=True, slots=True, init=False)
class Unrouted:
    """No route in the bundle matches the request's host and path; `reason` says which."""

    reason: str

    def __init__(self, reason: str) -> None:
        # Written out so that it is compiled (a dataclass's generated `__init__` runs
        # interpreted): a request for a host no route names costs its lookup and this.
        object.__setattr__(self, "reason", reason)


Route = Routed | Unrouted


@mypyc_attr(allow_interpreted_subclasses=True)  # a test's router crashes the process
@dataclass(frozen=True)
class Router:
    """Routes sorted so that exact hosts beat `*` and longer prefixes beat shorter ones: each
    as its lowercase host, its path prefix and the prefix's length, and where it goes."""

    routes: tuple[tuple[str, str, int, Routed], ...]
    # Whether any route is for a host other than `*`: when none is, the request's host decides
    # nothing and is not read. Derived from `routes` when the router is made.
    names_hosts: bool = field(init=False)

    def __post_init__(self) -> None:
        names_hosts = any(route_host != "*" for route_host, *_ in self.routes)
        object.__setattr__(self, "names_hosts", names_hosts)

    @classmethod
    def build(cls, bundle: Bundle) -> Router:
        origins = {o.id: o for o in bundle.origins}
        ordered = sorted(bundle.routes, key=lambda r: (r.host == "*", -len(r.path_prefix)))
        routes = tuple(
            (r.host.lower(), r.path_prefix, len(r.path_prefix), Routed(origins[r.origin]))
            for r in ordered
        )
        return cls(routes)

    def route(self, host: str, path: str, resolved: str) -> Route:
        """Where a request for `host` and `path` (as received) goes. Prefixes are matched
        against `resolved`, the path as the origin resolves it (the one rules and rate limits
        read, `RequestView.normalized_path`)."""
        # `startswith` without a call: by slices, the prefix's length worked out at load
        if not self.names_hosts:  # every route is for `*`, which `bare` then matches as is
            bare = "*"
        else:
            bare = host.lower()
            if ":" in bare and bare[:1] != "[":  # a port: what `rsplit` would cut, a call less
                bare = bare.rsplit(":", 1)[0]
        for route_host, prefix, width, routed in self.routes:
            if (route_host == "*" or route_host == bare) and resolved[:width] == prefix:
                return routed
        return Unrouted(
            f"no route for host {host!r} path {path!r} (resolved {resolved!r}); add one to routes"
        )
