"""Rules grouped at load by the start of the paths they can match, so a request runs only the
rules its path leaves possible.

Each item (a rule's closure, a rate limit, a cache rule) comes with the path prefixes its
expression needs (`failsmall.engine.expr.prefilter`), or None. The index keys the items by the
first `width` characters of those prefixes (`width` is the shortest prefix's length): a path
selects the items whose prefixes start as it does, and the items that need no prefix. An item
left out is one whose expression is false on that path, so the result is the same as running
every item; where a caller needs every position kept (the WAF's outcomes, one per rule), a
`stand_in` takes the place of each item left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


class PathIndex(Generic[T]):
    """Items by the first `width` characters of the paths they can match (see the module).

    Not a dataclass: compiled, a generic dataclass fails to load."""

    def __init__(
        self, width: int, by_start: dict[str, tuple[T, ...]], others: tuple[T, ...]
    ) -> None:
        self.width: Final = width
        self.by_start: Final = by_start
        # The items for a path that starts as no prefix does: those that need none.
        self.others: Final = others

    @classmethod
    def build(
        cls,
        items: Sequence[tuple[T, tuple[str, ...] | None]],
        stand_in: Callable[[T], T] | None = None,
    ) -> PathIndex[T]:
        """Index `items`, each with the prefixes it needs (None: it needs none). With a
        `stand_in`, an item a path leaves out is replaced by `stand_in(item)`, else dropped."""
        prefixes = [p for _, needed in items if needed is not None for p in needed]
        width = min((len(p) for p in prefixes), default=0)

        def selected(start: str | None) -> tuple[T, ...]:
            chosen: list[T] = []
            for item, needed in items:
                if needed is None or any(p[:width] == start for p in needed):
                    chosen.append(item)
                elif stand_in is not None:
                    chosen.append(stand_in(item))
            return tuple(chosen)

        starts = {p[:width] for p in prefixes}
        return cls(width, {start: selected(start) for start in starts}, selected(None))

    def select(self, path: str) -> tuple[T, ...]:
        """The items that may match a request for `path`, in their order."""
        return self.by_start.get(path[: self.width], self.others)

    def map(self, made: Callable[[tuple[T, ...]], tuple[U, ...]]) -> PathIndex[U]:
        """The same index over what `made` makes of each selection, made once here: a caller
        that needs something else than the items (the WAF's runs of checks) selects it by
        `select` as the others select their items."""
        return PathIndex(
            self.width,
            {start: made(chosen) for start, chosen in self.by_start.items()},
            made(self.others),
        )
