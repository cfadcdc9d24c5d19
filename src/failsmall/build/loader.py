"""Loading an authored config directory into a Bundle, with every problem located.

Layout of a config directory:

    bundle.yaml          the bundle: phases, origins, routes, limits, rate_limits, cache, bot...
    rulesets/*.yaml      one ruleset per file
    features.yaml        optional: the bot feature file
    overrides.yaml       optional: a list of rule state overrides (killswitches)
    exceptions.yaml      optional: a list of rule exceptions (`failsmall tune --accept` adds to it)

Rulesets executed but not defined in the directory are taken from the managed rulesets shipped
with failsmall (e.g. `failsmall-managed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from failsmall.build.yamlfile import YamlFileError, read_yaml
from failsmall.model.bot import FeatureFile
from failsmall.model.bundle import Bundle
from failsmall.model.rules import Override, RuleException, Ruleset

MANAGED_PACKAGE = "failsmall.managed"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in one file, at a path inside the document."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A config directory that does not make a valid bundle; `problems` lists all of them."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def managed_ruleset_ids() -> list[str]:
    root = resources.files(MANAGED_PACKAGE)
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_managed_ruleset(ruleset_id: str) -> Ruleset:
    resource = resources.files(MANAGED_PACKAGE).joinpath(f"{ruleset_id}.yaml")
    data = read_yaml(Path(str(resource)))
    return Ruleset.model_validate(data)


def load_config_dir(directory: Path) -> Bundle:
    """Read, validate and assemble a config directory. Raises ConfigError with every problem."""
    problems: list[ConfigProblem] = []
    if not directory.is_dir():
        raise ConfigError([ConfigProblem(str(directory), "", "is not a directory")])
    bundle_file = directory / "bundle.yaml"
    top = _read_mapping(bundle_file, problems) if bundle_file.exists() else {}
    if not bundle_file.exists():
        problems.append(ConfigProblem(str(bundle_file), "", "missing: every config needs one"))
    rulesets: list[dict[str, Any]] = list(top.pop("rulesets", []) or [])
    for path in sorted((directory / "rulesets").glob("*.y*ml")):
        data = _read_mapping(path, problems)
        if data and _validate(Ruleset, data, path, problems):
            rulesets.append(data)
    features = directory / "features.yaml"
    if features.exists():
        data = _read_mapping(features, problems)
        if data and _validate(FeatureFile, data, features, problems):
            top.setdefault("bot", {})["feature_file"] = data
    for name, model, key in (
        ("overrides.yaml", Override, "overrides"),
        ("exceptions.yaml", RuleException, "exceptions"),
    ):
        listed = directory / name
        if not listed.exists():
            continue
        data = _read_yaml(listed, problems)
        if isinstance(data, list):
            for i, item in enumerate(data):
                _validate(model, item, listed, problems, prefix=f"[{i}]")
            top[key] = [*(top.get(key) or []), *data]
        elif data is not None:
            problems.append(ConfigProblem(str(listed), "", f"must be a list of {key}"))
    _add_managed(rulesets, problems)
    top["rulesets"] = rulesets
    if problems:
        raise ConfigError(problems)
    try:
        return Bundle.model_validate(top)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, bundle_file)) from exc


def _add_managed(rulesets: list[dict[str, Any]], problems: list[ConfigProblem]) -> None:
    defined = {rs.get("id") for rs in rulesets if isinstance(rs, dict)}
    available = set(managed_ruleset_ids())
    pending = [rs for rs in rulesets if isinstance(rs, dict)]
    while pending:
        ruleset = pending.pop()
        for rule in ruleset.get("rules", []) or []:
            action = rule.get("action", {}) if isinstance(rule, dict) else {}
            target = action.get("ruleset") if isinstance(action, dict) else None
            if action.get("type") == "execute" and target not in defined and target in available:
                try:
                    managed = load_managed_ruleset(str(target)).model_dump(mode="json")
                except (YamlFileError, ValidationError) as exc:
                    problems.append(ConfigProblem(f"managed:{target}", "", str(exc)))
                    continue
                defined.add(target)
                rulesets.append(managed)
                pending.append(managed)


def _read_yaml(path: Path, problems: list[ConfigProblem]) -> Any:
    try:
        return read_yaml(path)
    except YamlFileError as exc:
        problems.append(ConfigProblem(str(path), "", str(exc)))
        return None


def _read_mapping(path: Path, problems: list[ConfigProblem]) -> dict[str, Any]:
    data = _read_yaml(path, problems)
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(ConfigProblem(str(path), "", "must be a mapping at the top level"))
        return {}
    return data


def _validate(
    model: type[Ruleset] | type[FeatureFile] | type[Override] | type[RuleException],
    data: Any,
    path: Path,
    problems: list[ConfigProblem],
    prefix: str = "",
) -> bool:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems(exc, path, prefix))
        return False
    return True


def _problems(exc: ValidationError, path: Path, prefix: str = "") -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    for error in exc.errors():
        loc = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; `failsmall schema` lists the fields)"
        out.append(ConfigProblem(str(path), loc.lstrip("."), message))
    return out
