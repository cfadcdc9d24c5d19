"""`failsmall expr`: fields and check, through the real command."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from failsmall.cli.main import app
from failsmall.engine.expr import FIELDS

runner = CliRunner()


def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    lines = [
        {"method": "GET", "uri": "/admin/x?id=1", "headers": {"User-Agent": "curl/8"},
         "client_ip": "10.0.0.5"},
        {"method": "POST", "uri": "/login", "headers": [["Cookie", "session=1"]], "body": "a=1",
         "client_ip": "8.8.8.8"},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_fields_lists_the_registry_as_json() -> None:
    result = runner.invoke(app, ["expr", "fields", "--json"])
    assert result.exit_code == 0
    assert [row["field"] for row in json.loads(result.stdout)] == list(FIELDS)


def test_check_evaluates_a_corpus_with_the_reference(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "expr", "check",
            'http.request.uri.path.startsWith("/admin") || ip_in_list(ip.src, "office")',
            "--ip-list", "office=192.168.0.0/16,8.8.8.8",
            "--requests", str(corpus(tmp_path)), "--reference", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [row["ours"] for row in report["results"]] == ["True", "True"]
    assert report["disagreements"] == 0


def test_check_fails_on_an_evaluation_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["expr", "check", 'http.request.cookies.session[0] == "1"',
         "--requests", str(corpus(tmp_path)), "--json"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"] == 1


def test_check_refuses_an_expression_that_does_not_compile() -> None:
    result = runner.invoke(app, ["expr", "check", 'http.requst.method == "GET"'])
    assert result.exit_code == 2
    assert "did you mean" in result.output
