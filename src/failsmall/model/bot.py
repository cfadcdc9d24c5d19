"""The bot feature file: named, weighted request features that produce a bot score."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from failsmall.model.base import Strict

DEFAULT_BOT_FEATURE_SLOTS = 200


class FeatureKind(StrEnum):
    """How a feature is read off a request.

    - `header_present`: 1 if header `param` is present.
    - `header_absent`: 1 if header `param` is absent.
    - `header_order`: 1 if the comma-separated header names in `param` appear in that order.
    - `user_agent_class`: 1 if the user agent falls in class `param` (browser, curl, python,
      go, java, headless, scanner, empty, other).
    - `rate_over`: 1 if the client's recent request rate (per second) exceeds `param`.
    - `accept_wildcard`: 1 if the Accept header is exactly `*/*`.
    """

    HEADER_PRESENT = "header_present"
    HEADER_ABSENT = "header_absent"
    HEADER_ORDER = "header_order"
    USER_AGENT_CLASS = "user_agent_class"
    RATE_OVER = "rate_over"
    ACCEPT_WILDCARD = "accept_wildcard"


# A feature's key names what it reads (kind and parameter), independent of the name a file gives
# it: nodes log present features by key, and the analytics table has one column per key.
KEY_PREFIXES: dict[FeatureKind, str] = {
    FeatureKind.HEADER_PRESENT: "hdr",
    FeatureKind.HEADER_ABSENT: "nohdr",
    FeatureKind.HEADER_ORDER: "order",
    FeatureKind.USER_AGENT_CLASS: "ua",
    FeatureKind.RATE_OVER: "rate",
    FeatureKind.ACCEPT_WILDCARD: "accept-any",
}
_KINDS_BY_PREFIX = {prefix: kind for kind, prefix in KEY_PREFIXES.items()}


def feature_key(kind: FeatureKind, param: str) -> str:
    """`ua:browser`, `hdr:accept-language`, `rate:20`, `accept-any`: kind and parameter."""
    param = param.strip().lower()
    prefix = KEY_PREFIXES[kind]
    return f"{prefix}:{param}" if param and kind is not FeatureKind.ACCEPT_WILDCARD else prefix


def feature_from_key(key: str, weight: float = 0.0) -> Feature:
    """The feature a key names, named by its key; ValueError (saying why) for a bad key."""
    prefix, _, param = key.partition(":")
    kind = _KINDS_BY_PREFIX.get(prefix)
    if kind is None:
        known = ", ".join(sorted(_KINDS_BY_PREFIX))
        raise ValueError(f"{key!r} is not a feature key: it starts with none of {known}")
    feature = Feature(name=key, kind=kind, param=param, weight=weight)
    if feature.key != key:
        raise ValueError(f"{key!r} is not a feature key: it is spelled {feature.key!r}")
    return feature


class Feature(Strict):
    """One feature with its weight. Negative weights push the score towards `bot`."""

    name: str = Field(min_length=1, max_length=128)
    kind: FeatureKind
    param: str = ""
    weight: float = Field(ge=-100, le=100)

    @model_validator(mode="after")
    def _param_fits_kind(self) -> Feature:
        match self.kind:
            case FeatureKind.RATE_OVER:
                try:
                    float(self.param)
                except ValueError as exc:
                    raise ValueError(f"feature {self.name!r}: rate_over needs a number") from exc
            case FeatureKind.HEADER_PRESENT | FeatureKind.HEADER_ABSENT | FeatureKind.HEADER_ORDER:
                if not self.param.strip():
                    raise ValueError(
                        f"feature {self.name!r}: {self.kind.value} needs a header name"
                    )
            case FeatureKind.USER_AGENT_CLASS | FeatureKind.ACCEPT_WILDCARD:
                pass
        return self

    @property
    def key(self) -> str:
        return feature_key(self.kind, self.param)


class FeatureFile(Strict):
    """A versioned feature file. `slots` is the capacity it needs on a node."""

    version: str = "1"
    features: list[Feature] = Field(default_factory=list)
    base_score: float = Field(default=70, ge=1, le=99)

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureFile:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {', '.join(dupes)}")
        return self

    @property
    def slots(self) -> int:
        return len(self.features)


class BotConfig(Strict):
    """Bot scoring configuration."""

    enabled: bool = True
    feature_file: FeatureFile = Field(default_factory=FeatureFile)
