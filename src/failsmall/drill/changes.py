"""Bundle changes that drills push: pure functions from the seed bundle to a faulty one."""

from __future__ import annotations

import json
from typing import assert_never

from failsmall.drill.features import generated
from failsmall.drill.scenario import (
    Aborts,
    BlockEveryone,
    BodyBuffer,
    Change,
    DeadOrigin,
    FeatureFileSize,
    Pattern,
)
from failsmall.model import Bundle, FeatureFile
from failsmall.model.envelope import bundle_data


class ChangeError(Exception):
    """A change that does not apply to this bundle; the message says what is missing."""


def changed(bundle: Bundle, change: Change, dead_port: int) -> Bundle:
    """`bundle` with `change` made. `dead_port` is a loopback port nothing listens on."""
    data = bundle_data(bundle)
    match change:
        case BodyBuffer(bytes=size):
            data["name"] = f"{bundle.name}+body-buffer-{size}"
            data["limits"]["waf_body_buffer"] = size
        case BlockEveryone(ruleset=ruleset_id):
            data["name"] = f"{bundle.name}+blocks-everyone"
            ruleset = next((r for r in data["rulesets"] if r["id"] == ruleset_id), None)
            if ruleset is None:
                raise ChangeError(f"the bundle has no ruleset {ruleset_id!r} to add the rule to")
            rule = {"id": "drill-block-everyone", "expression": "true", "action": {"type": "block"}}
            ruleset["rules"].insert(0, rule)
        case DeadOrigin(origin=origin_id):
            data["name"] = f"{bundle.name}+dead-origin"
            origin = next((o for o in data["origins"] if o["id"] == origin_id), None)
            if origin is None:
                raise ChangeError(f"the bundle has no origin {origin_id!r} to shift")
            origin["url"] = f"http://127.0.0.1:{dead_port}"
            origin["replicas"] = []
        case Aborts(percent=percent, status=status):
            data["name"] = f"{bundle.name}+aborts-{percent:g}"
            data["fault"] = {"abort_percent": percent, "abort_status": status}
        case FeatureFileSize(features=features):
            return with_feature_file(bundle, generated(features).good, f"features-{features}")
        case Pattern(pattern=pattern, rules=count, ruleset=ruleset_id):
            data["name"] = f"{bundle.name}+pattern-x{count}"
            ruleset = next((r for r in data["rulesets"] if r["id"] == ruleset_id), None)
            if ruleset is None:
                raise ChangeError(f"the bundle has no ruleset {ruleset_id!r} to add rules to")
            quoted = json.dumps(pattern)  # a JSON string is a valid CEL string literal
            test = f"http.user_agent.matches({quoted}) || http.request.uri.matches({quoted})"
            added = [
                {"id": f"drill-pattern-{i}", "expression": test, "action": {"type": "log"}}
                for i in range(1, count + 1)
            ]
            ruleset["rules"][0:0] = added
        case _:
            assert_never(change)
    return Bundle.model_validate(data)


def with_feature_file(bundle: Bundle, features: FeatureFile, label: str = "") -> Bundle:
    """`bundle` carrying another bot feature file (and `+label` on its name, when given). Its
    declared need (`requires`) is sized to the file, as the pipeline that generates it
    declares: the node checks it against what it has. The same file gives the same bundle."""
    if features == bundle.bot.feature_file and not label:
        return bundle
    data = bundle_data(bundle)
    if label:
        data["name"] = f"{bundle.name}+{label}"
    data["bot"]["feature_file"] = features.model_dump(mode="json")
    requires = data["requires"]
    requires["bot_feature_slots"] = max(requires["bot_feature_slots"], features.slots)
    return Bundle.model_validate(data)
