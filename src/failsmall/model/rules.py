"""Rulesets, rules, actions, signature matches and overrides: the WAF's configuration."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from failsmall.model.base import Strict

RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
RuleId = Annotated[str, Field(pattern=RULE_ID)]


class Phase(StrEnum):
    """The WAF phases, in the fixed order in which they run."""

    CUSTOM = "http_request_firewall_custom"
    MANAGED = "http_request_firewall_managed"


PHASE_ORDER: tuple[Phase, ...] = (Phase.CUSTOM, Phase.MANAGED)


class RuleState(StrEnum):
    """A rule's state. `disabled` is what a killswitch sets."""

    ACTIVE = "active"
    LOG_ONLY = "log_only"
    DISABLED = "disabled"


class BlockAction(Strict):
    """Terminate the request with an error status."""

    type: Literal["block"] = "block"
    status: int = Field(default=403, ge=400, le=599)


class ChallengeAction(Strict):
    """Terminate the request with a challenge page (HTTP 403 with a challenge marker)."""

    type: Literal["challenge"] = "challenge"


class LogAction(Strict):
    """Record the match and continue."""

    type: Literal["log"] = "log"


class SkipAction(Strict):
    """Skip the rest of the current ruleset, later phases, or named rulesets."""

    type: Literal["skip"] = "skip"
    rest_of_ruleset: bool = False
    phases: list[Phase] = Field(default_factory=list)
    rulesets: list[RuleId] = Field(default_factory=list)

    @model_validator(mode="after")
    def _skips_something(self) -> SkipAction:
        if not (self.rest_of_ruleset or self.phases or self.rulesets):
            raise ValueError(
                "a skip action must skip something: set rest_of_ruleset, phases or rulesets"
            )
        return self


class RuleOverride(Strict):
    """What an execute override changes for the rules it selects."""

    state: RuleState | None = None
    action: Literal["block", "challenge", "log"] | None = None
    score: int | None = Field(default=None, ge=0, le=1000)


class ExecuteOverrides(Strict):
    """Overrides applied to an executed ruleset. Precedence: rule > tag > ruleset."""

    ruleset: RuleOverride | None = None
    tags: dict[str, RuleOverride] = Field(default_factory=dict)
    rules: dict[RuleId, RuleOverride] = Field(default_factory=dict)
    paranoia_level: int | None = Field(default=None, ge=1, le=4)
    score_threshold: int | None = Field(default=None, ge=1, le=10000)


class ExecuteAction(Strict):
    """Run another ruleset, with overrides."""

    type: Literal["execute"] = "execute"
    ruleset: RuleId
    overrides: ExecuteOverrides = Field(default_factory=ExecuteOverrides)


class ScoreAction(Strict):
    """Add points to the executing ruleset's anomaly score."""

    type: Literal["score"] = "score"
    points: int = Field(default=5, ge=0, le=1000)


Action = Annotated[
    BlockAction | ChallengeAction | LogAction | SkipAction | ExecuteAction | ScoreAction,
    Field(discriminator="type"),
]


class Target(StrEnum):
    """Parts of a request a signature can be matched against."""

    PATH = "path"
    URI = "uri"
    QUERY = "query"
    ARG_NAMES = "arg_names"
    ARG_VALUES = "arg_values"
    BODY = "body"
    BODY_ARG_NAMES = "body_arg_names"
    BODY_ARG_VALUES = "body_arg_values"
    HEADER_NAMES = "header_names"
    HEADER_VALUES = "header_values"
    USER_AGENT = "user_agent"
    REFERER = "referer"
    COOKIE_NAMES = "cookie_names"
    COOKIE_VALUES = "cookie_values"
    METHOD = "method"
    FILENAMES = "filenames"


class Transform(StrEnum):
    """Transformations applied to a target before matching, in the declared order."""

    URL_DECODE = "url_decode"
    URL_DECODE_UNI = "url_decode_uni"
    HTML_ENTITY_DECODE = "html_entity_decode"
    LOWERCASE = "lowercase"
    COMPRESS_WHITESPACE = "compress_whitespace"
    REMOVE_WHITESPACE = "remove_whitespace"
    REMOVE_NULLS = "remove_nulls"
    NORMALIZE_PATH = "normalize_path"
    BASE64_DECODE = "base64_decode"
    REMOVE_COMMENTS = "remove_comments"
    CMD_LINE = "cmd_line"
    JS_DECODE = "js_decode"


class SignatureMatch(Strict):
    """Patterns (hyperscan syntax, linear-time only) matched over request targets.

    The rule matches when any pattern hits any target after the transforms; when the rule also
    has an expression, both must hold.
    """

    targets: list[Target] = Field(min_length=1)
    transforms: list[Transform] = Field(default_factory=list)
    patterns: list[str] = Field(min_length=1)
    caseless: bool = True


class Rule(Strict):
    """One rule: an expression (CEL), optional signatures, an action, tags and a state."""

    id: RuleId
    description: str = ""
    expression: str = "true"
    match: SignatureMatch | None = None
    action: Action
    tags: list[str] = Field(default_factory=list)
    state: RuleState = RuleState.ACTIVE


class Ruleset(Strict):
    """An ordered list of rules. Managed rulesets carry an anomaly score threshold."""

    id: RuleId
    description: str = ""
    kind: Literal["custom", "managed"] = "custom"
    rules: list[Rule] = Field(default_factory=list)
    score_threshold: int = Field(default=5, ge=1, le=10000)
    threshold_action: BlockAction | ChallengeAction | LogAction = Field(
        default_factory=BlockAction, discriminator="type"
    )
    paranoia_level: int = Field(default=1, ge=1, le=4)


class Override(Strict):
    """A rule state override: a killswitch (`disabled`) or a dry-run (`log_only`).

    Reason and author are required so that every flip can be explained; an override past its
    expiry lapses and the rule's authored state applies again.
    """

    rule: RuleId
    state: RuleState
    reason: str = Field(min_length=1)
    author: str = Field(min_length=1)
    expires_at: AwareDatetime | None = None


class RuleException(Strict):
    """Lets requests through signature rules that blocked them wrongly, in a narrow scope.

    Selects rules by id (`rules`) or tag (`tags`); at least one must be given, so that an empty
    selector never means every rule. The scope fields narrow where it applies; each one left
    empty applies everywhere, and a request is in scope when it matches every one given:
    `hosts` (exact, or `*.example.com` for its subdomains), `paths` and `fields` (exact, or a
    prefix ending in `*`), `methods`. With `fields`, only the selected rules' matches on those
    fields (named as the access log names them: `args.q`, `body.items.*`, `headers.referer`,
    `cookies.sid`, `path`, `body`) are let through: a match on any other field still counts.
    """

    id: RuleId
    reason: str = Field(min_length=1)
    author: str = Field(min_length=1)
    rules: list[RuleId] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)
    fields: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _selects_rules(self) -> RuleException:
        if not (self.rules or self.tags):
            raise ValueError(
                f"exception {self.id!r} selects no rule: give `rules` or `tags` (an empty "
                "selector never means every rule)"
            )
        empty = [
            name
            for name in ("tags", "hosts", "paths", "methods", "fields")
            if any(not value.strip() for value in getattr(self, name))
        ]
        if empty:
            raise ValueError(f"exception {self.id!r} has an empty value in {', '.join(empty)}")
        return self
