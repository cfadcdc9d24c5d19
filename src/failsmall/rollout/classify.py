"""Change classification by semantic diff of two bundles.

The class is computed from what changed, never taken from the author:

- `killswitch`: only `overrides` changed (an override added, lifted or changed).
- `content`: only data a module reads changed: IP lists, signature patterns, the bot feature
  file, cache TTLs, names and descriptions.
- `logic`: anything else: actions, rule states, expressions, rules or rulesets added or
  removed, module switches, limits, capacities, rate limits, routes, origins, fault settings.
  Fields not known to be content are logic, so a new field is treated strictly until it is
  listed here. Rule exceptions are logic: adding, widening or removing one changes which
  rules decide which requests, as a rule state does, and a too-broad one disarms a rule.

A change that touches more than one class is `logic`. The first bundle ever is `logic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, assert_never

from failsmall.model import Bundle
from failsmall.rollout.errors import ClassDowngradeError, NoChangeError


class ChangeClass(StrEnum):
    """What a bundle changes relative to the one before, from least to most strict."""

    KILLSWITCH = "killswitch"
    CONTENT = "content"
    LOGIC = "logic"

    @property
    def strictness(self) -> int:
        match self:
            case ChangeClass.KILLSWITCH:
                return 0
            case ChangeClass.CONTENT:
                return 1
            case ChangeClass.LOGIC:
                return 2
            case _:
                assert_never(self)


class DifferenceKind(StrEnum):
    """How one path differs between the old and the new bundle."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference, at a path such as `rulesets[managed].rules[sqli-1].action`."""

    path: tuple[str, ...]
    kind: DifferenceKind
    change_class: ChangeClass

    @property
    def dotted(self) -> str:
        return ".".join(self.path).replace(".[", "[")

    def describe(self) -> str:
        return f"{self.dotted} {self.kind.value} ({self.change_class.value})"


@dataclass(frozen=True, slots=True)
class Classification:
    """The computed class of a change and every difference that led to it."""

    change_class: ChangeClass
    differences: tuple[Difference, ...]

    def describe(self) -> list[str]:
        """One human-readable line per difference."""
        if not self.differences:
            return ["first bundle: everything is new (logic)"]
        return [d.describe() for d in self.differences]


# Lists of objects are compared element by element, keyed by the field that names them.
_KEYED_LISTS: dict[str, str] = {
    "rulesets": "id",
    "rules": "id",
    "overrides": "rule",
    "exceptions": "id",
    "features": "name",
    "origins": "id",
    "rate_limits": "id",
    "cache.rules": "id",
}

_ANY = "*"

# Path prefixes (with `*` for one keyed element) and their class. Anything else is logic.
_CLASS_OF_PREFIX: tuple[tuple[tuple[str, ...], ChangeClass], ...] = (
    (("overrides",), ChangeClass.KILLSWITCH),
    (("name",), ChangeClass.CONTENT),
    (("description",), ChangeClass.CONTENT),
    (("ip_lists",), ChangeClass.CONTENT),
    (("rulesets", _ANY, "description"), ChangeClass.CONTENT),
    (("rulesets", _ANY, "rules", _ANY, "description"), ChangeClass.CONTENT),
    (("rulesets", _ANY, "rules", _ANY, "match", "patterns"), ChangeClass.CONTENT),
    (("bot", "feature_file"), ChangeClass.CONTENT),
    (("cache", "default_ttl_s"), ChangeClass.CONTENT),
    (("cache", "rules", _ANY, "ttl_s"), ChangeClass.CONTENT),
)


def classify(old: Bundle | None, new: Bundle) -> Classification:
    """Classify the change from `old` (None for the first bundle ever) to `new`.

    Raises `NoChangeError` when the two bundles are identical.
    """
    if old is None:
        return Classification(ChangeClass.LOGIC, ())
    differences = tuple(
        Difference(path, kind, _class_of(pattern))
        for path, pattern, kind in _diff(
            old.model_dump(mode="json"), new.model_dump(mode="json"), (), ()
        )
    )
    if not differences:
        raise NoChangeError("the new bundle is identical to the current one; nothing to roll out")
    classes = {d.change_class for d in differences}
    change_class = classes.pop() if len(classes) == 1 else ChangeClass.LOGIC
    return Classification(change_class, differences)


def check_declared(declared: ChangeClass, computed: Classification) -> ChangeClass:
    """The class to roll out with: the declared one if it is at least as strict as computed.

    Raises `ClassDowngradeError` when the author declared a less strict class.
    """
    if declared.strictness < computed.change_class.strictness:
        culprits = [
            d.dotted for d in computed.differences if d.change_class == computed.change_class
        ]
        raise ClassDowngradeError(
            f"the bundle is declared {declared.value!r} but its changes make it "
            f"{computed.change_class.value!r} ({', '.join(culprits[:5]) or 'first bundle'}); "
            "declare it at least as strict as computed or split the change"
        )
    return declared


def _class_of(pattern: tuple[str, ...]) -> ChangeClass:
    for prefix, change_class in _CLASS_OF_PREFIX:
        if pattern[: len(prefix)] == prefix:
            return change_class
    return ChangeClass.LOGIC


def _diff(
    old: Any, new: Any, path: tuple[str, ...], pattern: tuple[str, ...]
) -> list[tuple[tuple[str, ...], tuple[str, ...], DifferenceKind]]:
    """(path, pattern, kind) for every difference; `pattern` has `*` for keyed elements."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[tuple[str, ...], tuple[str, ...], DifferenceKind]] = []
        for key in sorted(set(old) | set(new)):
            sub_path, sub_pattern = (*path, str(key)), (*pattern, str(key))
            if key not in old:
                found.append((sub_path, sub_pattern, DifferenceKind.ADDED))
            elif key not in new:
                found.append((sub_path, sub_pattern, DifferenceKind.REMOVED))
            else:
                found += _diff(old[key], new[key], sub_path, sub_pattern)
        return found
    key_field = _key_field(pattern)
    if isinstance(old, list) and isinstance(new, list) and key_field is not None:
        old_items = {str(item[key_field]): item for item in old}
        new_items = {str(item[key_field]): item for item in new}
        found = []
        for key in sorted(set(old_items) | set(new_items)):
            sub_path, sub_pattern = (*path, f"[{key}]"), (*pattern, _ANY)
            if key not in old_items:
                found.append((sub_path, sub_pattern, DifferenceKind.ADDED))
            elif key not in new_items:
                found.append((sub_path, sub_pattern, DifferenceKind.REMOVED))
            else:
                found += _diff(old_items[key], new_items[key], sub_path, sub_pattern)
        if not found and list(old_items) != list(new_items):
            found.append((path, pattern, DifferenceKind.CHANGED))
        return found
    return [(path, pattern, DifferenceKind.CHANGED)]


def _key_field(pattern: tuple[str, ...]) -> str | None:
    if not pattern:
        return None
    named = [part for part in pattern if part != _ANY]
    dotted = ".".join(named[-2:])
    if dotted in _KEYED_LISTS:
        return _KEYED_LISTS[dotted]
    return _KEYED_LISTS.get(pattern[-1])
