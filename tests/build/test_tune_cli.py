"""`failsmall tune`: logged false positives in, the narrowest exception out, its cost measured
on known attacks, written only when accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from failsmall.cli.main import app
from failsmall.node.access_log import AccessEntry

# Each test builds bundles with the managed signatures: tens of seconds on a loaded machine.
pytestmark = pytest.mark.slow
runner = CliRunner()

ENTRY = (
    "origins: [{id: web, url: 'http://127.0.0.1:9'}]\nroutes: [{origin: web}]\n"
    "phases: {http_request_firewall_managed: entry}\nrulesets:\n"
    "  - id: entry\n    rules:\n      - id: run-managed\n"
    "        action: {type: execute, ruleset: failsmall-managed}\n"
)
# A server-management tool posts shell scripts: ordinary for this site, an attack anywhere else.
SCRIPT = {"name": "inventory", "commands": "#!/bin/sh\nlscpu\ncat /proc/meminfo\n"}
LEGIT = {
    "method": "POST",
    "uri": "/api/jobs",
    "headers": {"Host": "ops.example", "Content-Type": "application/json"},
    "body": json.dumps(SCRIPT),
}
ATTACKS = [
    # the same kind of payload, in the excepted field: the exception lets it through
    {"method": "POST", "uri": "/x", "headers": {"Content-Type": "application/json"},
     "body": json.dumps({"commands": "uptime\ncat /proc/self/environ"})},
    # in another field, or another family: still blocked
    {"method": "POST", "uri": "/x", "headers": {"Content-Type": "application/json"},
     "body": json.dumps({"name": "uptime\ncat /proc/self/environ"})},
    {"uri": "/x?id=1%27%20UNION%20SELECT%20password%20FROM%20users--"},
]  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A config directory, its key and its built bundle."""
    key = tmp_path / "keys" / "k.pem"
    assert runner.invoke(app, ["keygen", str(key)]).exit_code == 0
    config = tmp_path / "config"
    config.mkdir()
    (config / "bundle.yaml").write_text(ENTRY)
    bundle = tmp_path / "site.bundle"
    result = runner.invoke(app, ["build", str(config), "-o", str(bundle), "--key", str(key)])
    assert result.exit_code == 0, result.output
    return config, key, bundle


def inspect(
    bundle: Path, tmp_path: Path, lines: list[dict[str, object]]
) -> list[dict[str, object]]:
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(app, ["inspect", str(bundle), "--requests", str(requests), "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_tune_proposes_measures_and_writes_only_when_accepted(
    tmp_path: Path, site: tuple[Path, Path, Path]
) -> None:
    config, key, bundle = site
    [verdict] = inspect(bundle, tmp_path, [LEGIT])
    assert verdict["decision"] == "block"
    assert verdict["fields"] and verdict["path"] == "/api/jobs"
    log = tmp_path / "inspect.jsonl"
    log.write_text(json.dumps(verdict) + "\n" + json.dumps(verdict) + "\n")
    attacks = tmp_path / "attacks.jsonl"
    attacks.write_text("".join(json.dumps(a) + "\n" for a in ATTACKS))

    args = ["tune", str(bundle), "--log", str(log), "--attacks", str(attacks), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] is None
    [proposal] = report["proposals"]
    exception = proposal["exception"]
    assert proposal["requests"] == 2
    assert exception["hosts"] == ["ops.example"]
    assert exception["paths"] == ["/api/jobs"]
    assert exception["methods"] == ["POST"]
    assert exception["fields"] == ["body.commands"]
    assert set(exception["rules"]) == set(verdict["fields"])  # type: ignore[arg-type]
    assert proposal["attacks_replayed"] == 3
    assert proposal["attacks_blocked_without"] == 3
    assert proposal["let_through_examples"] == ["attacks.jsonl:1"]
    assert not (config / "exceptions.yaml").exists()

    result = runner.invoke(app, [*args, "--accept", "--config", str(config), "--author", "ops"])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((config / "exceptions.yaml").read_text())
    assert [e["id"] for e in written] == [exception["id"]]
    assert written[0]["author"] == "ops"
    # accepting again adds nothing twice
    assert runner.invoke(app, [*args, "--accept", "--config", str(config)]).exit_code == 0
    assert len(yaml.safe_load((config / "exceptions.yaml").read_text())) == 1

    rebuilt = tmp_path / "tuned.bundle"
    result = runner.invoke(app, ["build", str(config), "-o", str(rebuilt), "--key", str(key)])
    assert result.exit_code == 0, result.output
    elsewhere = {**LEGIT, "uri": "/api/other"}
    decisions = [v["decision"] for v in inspect(rebuilt, tmp_path, [LEGIT, elsewhere])]
    assert decisions == ["allow", "block"]


def test_tune_reads_the_access_log(tmp_path: Path, site: tuple[Path, Path, Path]) -> None:
    _, _, bundle = site
    [verdict] = inspect(bundle, tmp_path, [LEGIT])
    entry = AccessEntry(
        "192.0.2.7",
        403,
        "block",
        1.5,
        request_id="r1",
        method="POST",
        host="ops.example:8443",
        path="/api/jobs",
        rules=tuple(verdict["matched_rules"]),  # type: ignore[arg-type]
        fields={k: tuple(v) for k, v in verdict["fields"].items()},  # type: ignore[union-attr]
    )
    allowed = AccessEntry("192.0.2.7", 200, "allow", 1.0, method="GET", host="x", path="/")
    log = tmp_path / "access.log"
    log.write_text(entry.to_line(1.0) + "\n" + allowed.to_line(2.0) + "\n")
    result = runner.invoke(app, ["tune", str(bundle), "--log", str(log), "--json"])
    assert result.exit_code == 0, result.output
    [proposal] = json.loads(result.stdout)["proposals"]
    assert proposal["exception"]["hosts"] == ["ops.example"]
    result = runner.invoke(app, ["tune", str(bundle), "--log", str(log)])
    assert result.exit_code == 0
    assert "nothing written" in result.output


def test_tune_says_what_to_pass_when_the_log_has_nothing_to_tune(
    tmp_path: Path, site: tuple[Path, Path, Path]
) -> None:
    _, _, bundle = site
    log = tmp_path / "empty.log"
    log.write_text(json.dumps({"decision": "allow"}) + "\n")
    result = runner.invoke(app, ["tune", str(bundle), "--log", str(log), "--json"])
    assert result.exit_code == 2
    assert "no blocked request" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["tune", str(bundle), "--log", str(log), "--accept"])
    assert result.exit_code == 2
    assert "--config" in result.output
    log.write_text("not json\n")
    result = runner.invoke(app, ["tune", str(bundle), "--log", str(log)])
    assert result.exit_code == 2 and "not JSON" in result.output.replace("\n", "")
