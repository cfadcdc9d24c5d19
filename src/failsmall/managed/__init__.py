"""The managed rulesets shipped with failsmall, and how to load them."""

from __future__ import annotations

from importlib import resources

import yaml

from failsmall.model.rules import Ruleset

MANAGED_RULESET_ID = "failsmall-managed"
_FILE = "failsmall-managed.yaml"


def managed_ruleset_text() -> str:
    """The YAML source of the `failsmall-managed` ruleset."""
    return resources.files(__package__).joinpath(_FILE).read_text(encoding="utf-8")


def managed_ruleset() -> Ruleset:
    """The `failsmall-managed` ruleset, validated."""
    return Ruleset.model_validate(yaml.safe_load(managed_ruleset_text()))


__all__ = ["MANAGED_RULESET_ID", "managed_ruleset", "managed_ruleset_text"]
