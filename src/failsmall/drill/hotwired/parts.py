"""Stand-in modules of the hotwired node, each with the defect an incident exposed."""

from __future__ import annotations

from typing import Any

from failsmall.engine import Executed, RequestView, Verdict, walk_rules
from failsmall.model import Bundle, FeatureFile, RuleState
from failsmall.model.bot import DEFAULT_BOT_FEATURE_SLOTS
from failsmall.model.envelope import bundle_data


class PreallocatedBot:
    """The bot module as it was on 2025-11-18: feature values are written into a table
    preallocated for `capacity` features, on every request. A file with more features than
    that raises (an index past the end, the `unwrap()` on an error), and with no bulkhead the
    request fails."""

    def __init__(self, features: FeatureFile, capacity: int = DEFAULT_BOT_FEATURE_SLOTS) -> None:
        self.features = features
        self.capacity = capacity

    def score(self, view: RequestView) -> float:
        table = [0.0] * self.capacity
        for index, feature in enumerate(self.features.features):
            table[index] = feature.weight if feature.param.lower() in view.headers else 0.0
        return self.features.base_score + sum(table)


class PreFixKillswitch:
    """The killswitch as it was on 2025-12-05: a killswitched `execute` rule still matches, but
    the engine skips initialising its execute results; the code after it reads them anyway."""

    def __init__(self, bundle: Bundle) -> None:
        executes = {
            rule.id
            for ruleset in bundle.rulesets
            for rule in ruleset.rules
            if rule.action.type == "execute"
        }
        self.killed = {
            o.rule for o in bundle.overrides if o.state is RuleState.DISABLED and o.rule in executes
        }

    def engine_bundle(self, bundle: Bundle) -> Bundle:
        """What the rules engine is built from: the killswitch on an `execute` rule only marks
        its results uninitialised, so the rule itself still runs."""
        if not self.killed:
            return bundle
        data = bundle_data(bundle)
        data["overrides"] = [o for o in data["overrides"] if o["rule"] not in self.killed]
        return Bundle.model_validate(data)

    def read_results(self, verdict: Verdict) -> None:
        """The step after the rules: it reads each execute rule's results. A killswitched one
        never initialised them (nil), so this raises for every request the rule matched."""
        initialised: dict[str, Any] = {}
        results: Any
        for outcome in walk_rules(verdict.rules):
            if isinstance(outcome, Executed):
                if outcome.rule_id not in self.killed:
                    initialised[outcome.rule_id] = outcome
                results = initialised.get(outcome.rule_id)
                _ = results.results  # AttributeError on None: the 500s of 2025-12-05
