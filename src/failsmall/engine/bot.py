"""Bot scoring: a feature file turns request features into a score from 1 (bot) to 99 (human)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import assert_never

from failsmall.engine.outcomes import BotScore, NotComputed, Scored
from failsmall.engine.request import RequestView
from failsmall.model.bot import BotConfig, Feature, FeatureKind
from failsmall.model.traffic import Capacities

USER_AGENT_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("empty", re.compile(r"^\s*$")),
    (
        "scanner",
        re.compile(r"sqlmap|nikto|nmap|masscan|zgrab|nuclei|dirbuster|gobuster|wpscan", re.I),
    ),
    ("headless", re.compile(r"headlesschrome|phantomjs|puppeteer|playwright|selenium", re.I)),
    ("curl", re.compile(r"^curl/|^wget/", re.I)),
    ("python", re.compile(r"python-requests|python-urllib|aiohttp|httpx|scrapy", re.I)),
    ("go", re.compile(r"^go-http-client", re.I)),
    ("java", re.compile(r"^java/|apache-httpclient|okhttp", re.I)),
    ("browser", re.compile(r"^mozilla/5\.0 .*(chrome|firefox|safari|edg)/", re.I)),
)


class FeatureFileError(Exception):
    """A feature file that cannot be loaded on this node (e.g. more features than slots)."""


def user_agent_class(user_agent: str) -> str:
    for name, pattern in USER_AGENT_CLASSES:
        if pattern.search(user_agent):
            return name
    return "other"


Presence = Callable[[RequestView, float, str], bool]
"""Whether a feature is present, from the request, the client's rate and its user agent class."""


@dataclass(frozen=True, slots=True)
class LoadedFeature:
    """A feature with its parameter parsed once, at load time, and its test chosen then too."""

    kind: FeatureKind
    weight: float
    param: str
    order: tuple[str, ...]
    threshold: float
    present: Presence = field(compare=False, repr=False)
    key: str = ""
    bit: int = 0  # this feature's bit in the mask of present features

    @classmethod
    def load(cls, feature: Feature, position: int = 0) -> LoadedFeature:
        param = feature.param.lower()
        order = tuple(p.strip() for p in param.split(",") if p.strip())
        threshold = float(param) if feature.kind is FeatureKind.RATE_OVER else 0.0
        present = _presence(feature.kind, param, order, threshold)
        bit = 1 << position
        return cls(feature.kind, feature.weight, param, order, threshold, present, feature.key, bit)


@dataclass(frozen=True, slots=True)
class FeatureTests:
    """A feature file's tests, grouped at load by what they read: the bits of the features a
    user agent class, a header's presence or absence, a header order, a wildcard Accept or a
    client rate over a threshold set. Each feature's `present` says the same, one at a time."""

    ua_class_bits: dict[str, int]
    header_bits: tuple[tuple[str, int, int], ...]  # name, bits if present, bits if absent
    header_orders: tuple[tuple[tuple[str, ...], int], ...]
    accept_wildcard_bits: int
    rates_over: tuple[tuple[float, int], ...]

    @classmethod
    def group(cls, features: tuple[LoadedFeature, ...]) -> FeatureTests:
        ua_class_bits: dict[str, int] = {}
        present: dict[str, int] = {}
        absent: dict[str, int] = {}
        orders: list[tuple[tuple[str, ...], int]] = []
        wildcard = 0
        rates: list[tuple[float, int]] = []
        for f in features:
            match f.kind:
                case FeatureKind.USER_AGENT_CLASS:
                    ua_class_bits[f.param] = ua_class_bits.get(f.param, 0) | f.bit
                case FeatureKind.HEADER_PRESENT:
                    present[f.param] = present.get(f.param, 0) | f.bit
                    absent.setdefault(f.param, 0)
                case FeatureKind.HEADER_ABSENT:
                    absent[f.param] = absent.get(f.param, 0) | f.bit
                    present.setdefault(f.param, 0)
                case FeatureKind.HEADER_ORDER:
                    orders.append((f.order, f.bit))
                case FeatureKind.ACCEPT_WILDCARD:
                    wildcard |= f.bit
                case FeatureKind.RATE_OVER:
                    rates.append((f.threshold, f.bit))
                case _:
                    assert_never(f.kind)
        headers = tuple((name, bits, absent[name]) for name, bits in present.items())
        return cls(ua_class_bits, headers, tuple(orders), wildcard, tuple(rates))


NO_FEATURES = NotComputed("the feature file has no features")
SWITCHED_OFF = NotComputed("bot scoring is switched off")


@dataclass(frozen=True)
class BotScorer:
    """A loaded feature file, checked against the node's slot capacity."""

    features: tuple[LoadedFeature, ...]
    base_score: float
    enabled: bool
    # The features' tests grouped by what they read, so a request is read once per kind.
    tests: FeatureTests = field(init=False, compare=False, repr=False)
    # Why no request is scored, when none is (scoring off, no features); else None.
    unscored: NotComputed | None = field(init=False, compare=False, repr=False)
    # User agents repeat across clients; their class, and so the bits of the user agent class
    # features present, depend on the string alone: those bits, by user agent.
    ua_bits: dict[str, int] = field(default_factory=dict, compare=False)
    # The score depends only on which features are present: one outcome per set of them,
    # carrying their keys (for the access log), kept by mask of present features.
    outcomes: dict[int, Scored] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tests", FeatureTests.group(self.features))
        unscored = SWITCHED_OFF if not self.enabled else NO_FEATURES if not self.features else None
        object.__setattr__(self, "unscored", unscored)

    def _ua_bits(self, user_agent: str) -> int:
        bits = self.tests.ua_class_bits.get(user_agent_class(user_agent), 0)
        if len(self.ua_bits) >= 4096:
            self.ua_bits.clear()
        self.ua_bits[user_agent] = bits
        return bits

    @classmethod
    def load(cls, config: BotConfig, capacities: Capacities) -> BotScorer:
        slots = config.feature_file.slots
        if slots > capacities.bot_feature_slots:
            raise FeatureFileError(
                f"feature file {config.feature_file.version!r} has {slots} features, more than "
                f"the {capacities.bot_feature_slots} slots this node has; regenerate it "
                "(check the generator's query for duplicates) or raise the node capacity"
            )
        features = tuple(
            LoadedFeature.load(f, i) for i, f in enumerate(config.feature_file.features)
        )
        base_score = config.feature_file.base_score
        return cls(features, base_score, config.enabled)

    def score(self, view: RequestView, client_rate: float) -> BotScore:
        unscored = self.unscored
        if unscored is not None:
            return unscored
        tests = self.tests
        headers = view.headers  # read here rather than through `view.header`, a call less each
        values = headers.get("user-agent")
        user_agent = values[0] if values else ""
        mask = self.ua_bits.get(user_agent)
        if mask is None:
            mask = self._ua_bits(user_agent)
        for name, if_present, if_absent in tests.header_bits:
            mask |= if_present if name in headers else if_absent
        for order, bit in tests.header_orders:
            if _in_order(order, view.header_names):
                mask |= bit
        if tests.accept_wildcard_bits:
            values = headers.get("accept")
            if values and values[0].strip() == "*/*":
                mask |= tests.accept_wildcard_bits
        for threshold, bit in tests.rates_over:
            if client_rate > threshold:
                mask |= bit
        known = self.outcomes.get(mask)
        if known is None:
            known = self._outcome(mask)
        return known

    def _outcome(self, mask: int) -> Scored:
        present = [f for f in self.features if f.bit & mask]
        total = self.base_score + sum(f.weight for f in present)
        outcome = Scored(max(1, min(99, round(total))), tuple(f.key for f in present))
        if len(self.outcomes) >= 4096:
            self.outcomes.clear()
        self.outcomes[mask] = outcome
        return outcome


def _presence(kind: FeatureKind, param: str, order: tuple[str, ...], threshold: float) -> Presence:
    match kind:
        case FeatureKind.HEADER_PRESENT:
            return lambda view, rate, ua_class: param in view.headers
        case FeatureKind.HEADER_ABSENT:
            return lambda view, rate, ua_class: param not in view.headers
        case FeatureKind.HEADER_ORDER:
            return lambda view, rate, ua_class: _in_order(order, view.header_names)
        case FeatureKind.USER_AGENT_CLASS:
            return lambda view, rate, ua_class: ua_class == param
        case FeatureKind.RATE_OVER:
            return lambda view, rate, ua_class: rate > threshold
        case FeatureKind.ACCEPT_WILDCARD:
            return lambda view, rate, ua_class: view.header("accept").strip() == "*/*"
        case _:
            assert_never(kind)


def _in_order(wanted: tuple[str, ...], names: list[str]) -> bool:
    """Whether the first of `names` among `wanted` are `wanted`, in that order."""
    position, count = 0, len(wanted)
    if not count:
        return False
    for name in names:
        if name in wanted:
            if name != wanted[position]:
                return False
            position += 1
            if position == count:
                return True
    return False
