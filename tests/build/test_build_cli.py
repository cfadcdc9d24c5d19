"""`failsmall keygen | build | verify | inspect | schema` as a person uses them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from failsmall.cli.main import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site"
ROUTED = "origins: [{id: web, url: 'http://127.0.0.1:9'}]\nroutes: [{origin: web}]\n"
"""Every request to one origin: the engine inspects routed requests only."""
runner = CliRunner()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "signing.pem"
    result = runner.invoke(app, ["keygen", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_build_example_and_inspect(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "site.bundle"
    result = runner.invoke(
        app, ["build", str(EXAMPLE), "-o", str(out), "--key", str(key), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["digest"].startswith("sha256:")
    requests = tmp_path / "requests.jsonl"
    lines = [
        {
            "method": "GET",
            "uri": "/products?id=7",
            "headers": {
                "Host": "shop.example",
                "User-Agent": "Mozilla/5.0 (X11) Chrome/130.0 Safari/537.36",
                "Accept-Language": "en",
            },
        },
        {"method": "GET", "uri": "/admin/users", "headers": [["Host", "shop.example"]]},
        {"method": "GET", "uri": "/", "client_ip": "198.51.100.7"},
    ]
    requests.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = runner.invoke(
        app,
        [
            "inspect",
            str(out),
            "--requests",
            str(requests),
            "--json",
            "--trust",
            str(key.with_suffix(".pub")),
        ],
    )
    assert result.exit_code == 0, result.output
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [v["decision"] for v in verdicts] == ["allow", "block", "block"]
    assert verdicts[1]["matched_rules"] == ["block-admin-outside-office"]
    assert isinstance(verdicts[0]["bot_score"], int)


def test_build_lists_every_problem_and_writes_nothing(tmp_path: Path, key: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE, config)
    (config / "rulesets" / "broken.yaml").write_text(
        "id: broken\nrules:\n"
        "  - id: x1\n    action: {type: block}\n    expresion: 'true'\n"
        "  - id: x2\n    action: {type: execute, ruleset: nowhere}\n"
    )
    (config / "rulesets" / "cel.yaml").write_text(
        "id: celbad\nrules:\n  - id: c1\n    expression: 'http.request.method =='\n"
        "    action: {type: log}\n  - id: c2\n    expression: 'http.nope == 1'\n"
        "    action: {type: log}\n"
    )
    out = tmp_path / "out.bundle"
    result = runner.invoke(app, ["build", str(config), "-o", str(out), "--key", str(key), "--json"])
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["problems"]
    assert any("broken.yaml: rules[0].expresion: unknown field" in p for p in problems)
    assert not out.exists()
    # fix the unknown field: now the dangling execute and the CEL problems all surface
    (config / "rulesets" / "broken.yaml").write_text(
        "id: broken\nrules:\n  - id: x2\n    action: {type: execute, ruleset: nowhere}\n"
    )
    result = runner.invoke(app, ["build", str(config), "-o", str(out), "--key", str(key), "--json"])
    assert result.exit_code == 2
    text = "\n".join(json.loads(result.stdout)["problems"])
    assert "unknown ruleset 'nowhere'" in text
    (config / "rulesets" / "broken.yaml").unlink()
    result = runner.invoke(app, ["build", str(config), "-o", str(out), "--key", str(key), "--json"])
    assert result.exit_code == 2
    text = "\n".join(json.loads(result.stdout)["problems"])
    assert "rule c1" in text and "rule c2" in text
    assert not out.exists()


def test_duplicate_yaml_keys_are_errors(tmp_path: Path, key: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "bundle.yaml").write_text("name: a\nname: b\n")
    result = runner.invoke(
        app, ["build", str(config), "-o", str(tmp_path / "b"), "--key", str(key)]
    )
    assert result.exit_code == 2
    assert "duplicate key" in result.output


def test_verify_runs_every_rule_in_every_state(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "site.bundle"
    assert (
        runner.invoke(app, ["build", str(EXAMPLE), "-o", str(out), "--key", str(key)]).exit_code
        == 0
    )
    corpus = tmp_path / "corpus.jsonl"
    browser = {
        "Host": "shop.example",
        "Accept": "text/html",
        "Accept-Language": "en",
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36",
    }
    corpus.write_text(
        "\n".join(
            json.dumps({**x, "headers": browser})
            for x in [
                {"method": "GET", "uri": "/admin"},
                {"method": "POST", "uri": "/login", "body": "user=o%27brien&pass=x"},
                {"method": "GET", "uri": "/search?q=1%27%20OR%201=1--"},
            ]
        )
        + "\n"
    )
    result = runner.invoke(app, ["verify", str(out), "--corpus", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rules = report["variants"] // 3
    assert rules >= 7
    assert report["ok"] is True
    assert any(c["rule"] == "block-admin-outside-office" for c in report["changes"])


def test_verify_fails_on_errored_outcome(tmp_path: Path, key: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "bundle.yaml").write_text(
        ROUTED + "phases: {http_request_firewall_custom: e}\nrulesets:\n"
        "  - id: e\n    rules:\n      - id: oops\n"
        '        expression: \'http.request.headers["x-token"][0] == "a"\'\n'
        "        action: {type: block}\n"
    )
    out = tmp_path / "b.bundle"
    assert (
        runner.invoke(app, ["build", str(config), "-o", str(out), "--key", str(key)]).exit_code == 0
    )
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"uri": "/"}) + "\n")
    result = runner.invoke(app, ["verify", str(out), "--corpus", str(corpus)])
    assert result.exit_code == 1
    assert "errored outcome" in result.output


def test_tampered_bundle_is_refused(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "site.bundle"
    assert (
        runner.invoke(app, ["build", str(EXAMPLE), "-o", str(out), "--key", str(key)]).exit_code
        == 0
    )
    out.write_text(out.read_text().replace("example-site", "evil-site"))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"uri": "/"}) + "\n")
    result = runner.invoke(app, ["inspect", str(out), "--requests", str(corpus)])
    assert result.exit_code == 2
    assert "hashes to" in result.output


def test_schema_is_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Bundle" and "rulesets" in schema["properties"]


SITE_RULES = (
    ROUTED + "phases: {http_request_firewall_custom: site}\nrulesets:\n"
    "  - id: site\n    rules:\n      - id: no-admin\n"
    "        expression: 'http.request.uri.path.startsWith(\"/admin\")'\n"
    "        action: {type: block}\n"
)


def site_bundle(tmp_path: Path, key: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "bundle.yaml").write_text(SITE_RULES)
    out = tmp_path / "site.bundle"
    result = runner.invoke(app, ["build", str(config), "-o", str(out), "--key", str(key)])
    assert result.exit_code == 0, result.output
    return out


def test_verify_checks_expected_verdicts_like_site_regression_tests(
    tmp_path: Path, key: Path
) -> None:
    bundle = site_bundle(tmp_path, key)
    corpus = tmp_path / "site-tests.jsonl"
    lines = [
        {"uri": "/admin/users", "expect": "block"},
        {"uri": "/admin", "expect": "block:403"},
        {"uri": "/products", "expect": "allow"},
        {"uri": "/about"},
    ]
    corpus.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = runner.invoke(app, ["verify", str(bundle), "--corpus", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["ok"], report["expectations"], report["mismatches"]) == (True, 3, [])

    lines[2] = {"uri": "/admin/secret", "expect": "allow"}
    lines.append({"uri": "/x", "expect": "block:451"})
    corpus.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = runner.invoke(app, ["verify", str(bundle), "--corpus", str(corpus), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [(m["request"], m["expected"], m["got"]) for m in report["mismatches"]] == [
        ("GET /admin/secret", "allow", "block:403"),
        ("GET /x", "block:451", "allow:200"),
    ]
    result = runner.invoke(app, ["verify", str(bundle), "--corpus", str(corpus)])
    assert result.exit_code == 1
    assert "2 verdict(s) differ from the expected" in result.output


def test_verify_refuses_an_expectation_it_cannot_check(tmp_path: Path, key: Path) -> None:
    bundle = site_bundle(tmp_path, key)
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text(json.dumps({"uri": "/", "expect": "blocked"}) + "\n")
    result = runner.invoke(app, ["verify", str(bundle), "--corpus", str(corpus)])
    assert result.exit_code == 2
    assert "expect must be one of" in result.output


def test_exceptions_yaml_is_part_of_the_bundle_and_checked(tmp_path: Path, key: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "bundle.yaml").write_text(
        ROUTED + "phases: {http_request_firewall_managed: entry}\nrulesets:\n"
        "  - id: entry\n    rules:\n      - id: run-managed\n"
        "        action: {type: execute, ruleset: failsmall-managed}\n"
    )
    exception = {
        "id": "search-sql",
        "reason": "search box for SQL snippets",
        "author": "ops",
        "tags": ["family:sqli"],
        "paths": ["/search"],
        "fields": ["args.q"],
    }
    (config / "exceptions.yaml").write_text(json.dumps([exception]))
    out = tmp_path / "b.bundle"
    result = runner.invoke(app, ["build", str(config), "-o", str(out), "--key", str(key)])
    assert result.exit_code == 0, result.output
    requests = tmp_path / "r.jsonl"
    sqli = "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"
    requests.write_text(
        json.dumps({"uri": sqli}) + "\n" + json.dumps({"uri": sqli.replace("search", "s")}) + "\n"
    )
    result = runner.invoke(app, ["inspect", str(out), "--requests", str(requests), "--json"])
    assert result.exit_code == 0, result.output
    decisions = [json.loads(line)["decision"] for line in result.stdout.splitlines()]
    assert decisions == ["allow", "block"]

    (config / "exceptions.yaml").write_text(json.dumps([{**exception, "tags": []}]))
    result = runner.invoke(app, ["build", str(config), "-o", str(out), "--key", str(key)])
    assert result.exit_code == 2
    output = result.output.replace("\n", "")
    assert "exceptions.yaml" in output and "selects no rule" in output
