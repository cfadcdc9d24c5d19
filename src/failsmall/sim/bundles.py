"""The bundles the scenarios push: a small site, and the changes made to it."""

from __future__ import annotations

from failsmall.model import (
    BlockAction,
    BotConfig,
    Bundle,
    Capacities,
    ExecuteAction,
    FaultConfig,
    Feature,
    FeatureFile,
    FeatureKind,
    Limits,
    LogAction,
    Origin,
    Override,
    Phase,
    RateLimit,
    Route,
    Rule,
    Ruleset,
    RuleState,
    ScoreAction,
    SignatureMatch,
    Target,
)

GOOD_FEATURES = 110


def feature_file(version: int, features: int = GOOD_FEATURES, doubled: bool = False) -> FeatureFile:
    """A generated bot feature file; `doubled` repeats every feature under a second database's
    prefix, as the 2025-11-18 generator did when its query lost its database filter."""
    names = [f"f{i:03d}" for i in range(features)]
    if doubled:
        names += [f"r0.{name}" for name in names]
    return FeatureFile(
        version=str(version),
        features=[
            Feature(name=name, kind=FeatureKind.HEADER_PRESENT, param=f"x-h{i % 40}", weight=1.0)
            for i, name in enumerate(names)
        ],
    )


def site(version: int = 1, *, features: FeatureFile | None = None) -> Bundle:
    """The site every scenario starts from: a custom ruleset that runs a managed one."""
    return Bundle(
        name="site",
        description=f"site v{version}",
        rulesets=[
            Ruleset(
                id="custom",
                rules=[
                    Rule(
                        id="block-admin",
                        expression='http.request.uri.path.startsWith("/admin")',
                        action=BlockAction(),
                    ),
                    Rule(id="run-managed", action=ExecuteAction(ruleset="managed")),
                ],
            ),
            Ruleset(
                id="managed",
                kind="managed",
                rules=[
                    Rule(
                        id="sqli-union",
                        match=SignatureMatch(
                            targets=[Target.ARG_VALUES], patterns=[r"union\s+select"]
                        ),
                        action=ScoreAction(points=5),
                    ),
                    Rule(id="waf-test", action=LogAction(), tags=["test"]),
                ],
            ),
        ],
        phases={Phase.CUSTOM: "custom"},
        ip_lists={"deny": ["192.0.2.0/24"]},
        bot=BotConfig(feature_file=features or feature_file(version)),
        rate_limits=[RateLimit(id="per-ip", requests=100, period_s=10)],
        origins=[Origin(id="app", url="http://127.0.0.1:8080")],
        routes=[Route(origin="app")],
    )


def with_rule(base: Bundle, rule: Rule) -> Bundle:
    """`base` with `rule` placed first in the custom ruleset (a logic change)."""
    custom = base.ruleset("custom")
    rulesets = [
        rs.model_copy(update={"rules": [rule, *rs.rules]}) if rs.id == custom.id else rs
        for rs in base.rulesets
    ]
    return base.model_copy(update={"rulesets": rulesets})


def block_everyone(base: Bundle) -> Bundle:
    """A WAF rule whose expression matches every request."""
    return with_rule(base, Rule(id="block-all", expression="true", action=BlockAction()))


def harmless_rule(base: Bundle) -> Bundle:
    """A new rule that blocks a path nobody requests."""
    return with_rule(
        base,
        Rule(
            id="block-old-api",
            expression='http.request.uri.path.startsWith("/api/v0/")',
            action=BlockAction(status=410),
        ),
    )


def half_aborted(base: Bundle) -> Bundle:
    """Fault injection left on: half the requests aborted with 503."""
    return base.model_copy(update={"fault": FaultConfig(abort_percent=50.0, abort_status=503)})


def bigger_body_buffer(base: Bundle) -> Bundle:
    """The WAF body buffer raised to 1 MiB (the change that preceded the 2025-12-05 outage);
    in the crash-loop scenario the nodes' new code path for it crashes."""
    return base.model_copy(update={"limits": Limits(waf_body_buffer=1024 * 1024)})


def killswitch(base: Bundle, rule: str, reason: str) -> Bundle:
    """`base` with rule `rule` disabled by an override."""
    override = Override(rule=rule, state=RuleState.DISABLED, reason=reason, author="oncall")
    return base.model_copy(update={"overrides": [*base.overrides, override]})


def new_feature_file(base: Bundle, version: int, doubled: bool) -> Bundle:
    """`base` with a freshly generated feature file. A doubled file declares the slots it
    needs, more than a node has, so nodes refuse it."""
    features = feature_file(version, doubled=doubled)
    requires = Capacities(bot_feature_slots=max(features.slots, base.requires.bot_feature_slots))
    return Bundle.model_validate(
        {
            **base.model_dump(),
            "bot": BotConfig(feature_file=features).model_dump(),
            "requires": requires.model_dump(),
        }
    )
