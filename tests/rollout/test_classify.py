"""Change classification: computed from the semantic diff, never from the author's word."""

from __future__ import annotations

import pytest

from failsmall.model import (
    BlockAction,
    Bundle,
    CacheConfig,
    CacheRule,
    FaultConfig,
    Feature,
    FeatureKind,
    Limits,
    LogAction,
    ModuleName,
    ModuleSettings,
    Origin,
    Override,
    Route,
    Rule,
    RuleState,
)
from failsmall.rollout import (
    ChangeClass,
    ClassDowngradeError,
    DifferenceKind,
    NoChangeError,
    check_declared,
    classify,
)
from failsmall.sim import bundles

BASE = bundles.site(1)


def _edit_rule(bundle: Bundle, rule_id: str, **update: object) -> Bundle:
    rulesets = [
        rs.model_copy(
            update={
                "rules": [r.model_copy(update=update) if r.id == rule_id else r for r in rs.rules]
            }
        )
        for rs in bundle.rulesets
    ]
    return bundle.model_copy(update={"rulesets": rulesets})


def _override(rule: str, state: RuleState = RuleState.DISABLED, reason: str = "r") -> Override:
    return Override(rule=rule, state=state, reason=reason, author="oncall")


def test_first_bundle_is_logic() -> None:
    result = classify(None, BASE)
    assert result.change_class is ChangeClass.LOGIC
    assert result.describe() == ["first bundle: everything is new (logic)"]


def test_identical_bundles_are_refused() -> None:
    with pytest.raises(NoChangeError, match="identical"):
        classify(BASE, bundles.site(1))


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            lambda b: b.model_copy(update={"ip_lists": {"deny": ["198.51.100.0/24"]}}),
            "ip_lists.deny",
        ),
        (
            lambda b: _edit_rule(
                b,
                "sqli-union",
                match=b.ruleset("managed")
                .rules[0]
                .match.model_copy(update={"patterns": [r"union\s+all\s+select"]}),
            ),
            "rulesets[managed].rules[sqli-union].match.patterns",
        ),
        (
            lambda b: b.model_copy(
                update={
                    "bot": b.bot.model_copy(
                        update={
                            "feature_file": b.bot.feature_file.model_copy(
                                update={
                                    "features": [
                                        f.model_copy(update={"weight": 2.5})
                                        if f.name == "f001"
                                        else f
                                        for f in b.bot.feature_file.features
                                    ]
                                }
                            )
                        }
                    )
                }
            ),
            "bot.feature_file.features[f001].weight",
        ),
        (
            lambda b: b.model_copy(update={"cache": CacheConfig(default_ttl_s=60)}),
            "cache.default_ttl_s",
        ),
        (
            lambda b: _edit_rule(b, "block-admin", description="admins only"),
            "rulesets[custom].rules[block-admin].description",
        ),
    ],
)
def test_data_a_module_reads_is_content(change: object, path: str) -> None:
    result = classify(BASE, change(BASE))  # type: ignore[operator]
    assert result.change_class is ChangeClass.CONTENT
    assert [d.dotted for d in result.differences] == [path]


def test_new_feature_is_content_but_a_bigger_capacity_need_is_logic() -> None:
    grown = BASE.bot.feature_file.model_copy(
        update={
            "features": [
                *BASE.bot.feature_file.features,
                Feature(name="extra", kind=FeatureKind.ACCEPT_WILDCARD, weight=-3),
            ]
        }
    )
    added = BASE.model_copy(update={"bot": BASE.bot.model_copy(update={"feature_file": grown})})
    result = classify(BASE, added)
    assert result.change_class is ChangeClass.CONTENT
    assert result.differences[0].kind is DifferenceKind.ADDED
    doubled = bundles.new_feature_file(BASE, 2, doubled=True)
    assert classify(BASE, doubled).change_class is ChangeClass.LOGIC


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            lambda b: _edit_rule(b, "block-admin", action=LogAction()),
            "rulesets[custom].rules[block-admin].action.type",
        ),
        (
            lambda b: _edit_rule(b, "block-admin", action=BlockAction(status=451)),
            "rulesets[custom].rules[block-admin].action.status",
        ),
        (
            lambda b: _edit_rule(b, "waf-test", state=RuleState.DISABLED),
            "rulesets[managed].rules[waf-test].state",
        ),
        (
            lambda b: _edit_rule(b, "block-admin", expression="true"),
            "rulesets[custom].rules[block-admin].expression",
        ),
        (
            lambda b: bundles.with_rule(b, Rule(id="new", action=LogAction())),
            "rulesets[custom].rules[new]",
        ),
        (
            lambda b: b.model_copy(
                update={"modules": {**b.modules, ModuleName.BOT: ModuleSettings(enabled=False)}}
            ),
            "modules.bot.enabled",
        ),
        (
            lambda b: b.model_copy(update={"limits": Limits(waf_body_buffer=1024 * 1024)}),
            "limits.waf_body_buffer",
        ),
        (
            lambda b: b.model_copy(update={"fault": FaultConfig(abort_percent=50)}),
            "fault.abort_percent",
        ),
        (
            lambda b: b.model_copy(
                update={"origins": [Origin(id="app", url="http://127.0.0.1:9090")]}
            ),
            "origins[app].url",
        ),
        (
            lambda b: b.model_copy(update={"routes": [Route(origin="app", path_prefix="/v2")]}),
            "routes",
        ),
        (
            lambda b: b.model_copy(
                update={"cache": CacheConfig(rules=[CacheRule(id="c", action="bypass")])}
            ),
            "cache.rules[c]",
        ),
    ],
)
def test_control_flow_is_logic(change: object, path: str) -> None:
    result = classify(BASE, change(BASE))  # type: ignore[operator]
    assert result.change_class is ChangeClass.LOGIC
    assert path in [d.dotted for d in result.differences]


def test_rule_order_is_logic() -> None:
    custom = BASE.ruleset("custom")
    swapped = BASE.model_copy(
        update={
            "rulesets": [
                custom.model_copy(update={"rules": list(reversed(custom.rules))}),
                BASE.ruleset("managed"),
            ]
        }
    )
    result = classify(BASE, swapped)
    assert result.change_class is ChangeClass.LOGIC
    assert [d.dotted for d in result.differences] == ["rulesets[custom].rules"]


def test_override_added_lifted_or_changed_is_killswitch() -> None:
    added = bundles.killswitch(BASE, "run-managed", "misfires")
    assert classify(BASE, added).change_class is ChangeClass.KILLSWITCH
    assert classify(added, BASE).change_class is ChangeClass.KILLSWITCH
    dry_run = BASE.model_copy(update={"overrides": [_override("run-managed", RuleState.LOG_ONLY)]})
    changed = classify(added, dry_run)
    assert changed.change_class is ChangeClass.KILLSWITCH
    assert changed.describe() == [
        "overrides[run-managed].reason changed (killswitch)",
        "overrides[run-managed].state changed (killswitch)",
    ]


def test_mixed_change_takes_logic() -> None:
    both = bundles.killswitch(BASE, "run-managed", "misfires").model_copy(
        update={"ip_lists": {"deny": ["203.0.113.0/24"]}}
    )
    result = classify(BASE, both)
    assert result.change_class is ChangeClass.LOGIC
    assert {d.change_class for d in result.differences} == {
        ChangeClass.KILLSWITCH,
        ChangeClass.CONTENT,
    }


def test_author_cannot_downgrade() -> None:
    computed = classify(BASE, bundles.block_everyone(BASE))
    with pytest.raises(ClassDowngradeError, match=r"declared 'content'.*'logic'.*block-all"):
        check_declared(ChangeClass.CONTENT, computed)
    killswitch = classify(BASE, bundles.killswitch(BASE, "run-managed", "misfires"))
    assert check_declared(ChangeClass.LOGIC, killswitch) is ChangeClass.LOGIC
    assert check_declared(ChangeClass.KILLSWITCH, killswitch) is ChangeClass.KILLSWITCH
    with pytest.raises(ClassDowngradeError):
        check_declared(ChangeClass.CONTENT, classify(None, BASE))


def test_the_class_of_a_change_is_the_class_of_its_undo() -> None:
    changes = [
        bundles.block_everyone(BASE),
        bundles.harmless_rule(BASE),
        bundles.killswitch(BASE, "run-managed", "misfires"),
        bundles.new_feature_file(BASE, 2, doubled=False),
        bundles.new_feature_file(BASE, 2, doubled=True),
        bundles.half_aborted(BASE),
    ]
    for changed in changes:
        forward, back = classify(BASE, changed), classify(changed, BASE)
        assert forward.change_class is back.change_class
        assert [d.dotted for d in forward.differences] == [d.dotted for d in back.differences]
        kinds = {
            (d.kind, e.kind) for d, e in zip(forward.differences, back.differences, strict=True)
        }
        assert kinds <= {
            (DifferenceKind.ADDED, DifferenceKind.REMOVED),
            (DifferenceKind.REMOVED, DifferenceKind.ADDED),
            (DifferenceKind.CHANGED, DifferenceKind.CHANGED),
        }
