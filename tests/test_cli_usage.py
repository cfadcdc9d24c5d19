"""Usage errors from the real `failsmall` command: JSON with `--json`, text without."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from failsmall.cli.up_cmd import failsmall_argv


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*failsmall_argv(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "error", "where"),
    [
        (("status", "--bogus", "--json"), "No such option: --bogus", "failsmall status"),
        (("build", "--json"), "Missing argument", "failsmall build"),
        (("sim", "--nodes", "many", "--json"), "Invalid value for '--nodes'", "failsmall sim"),
    ],
)
def test_usage_errors_with_json_are_json(args: tuple[str, ...], error: str, where: str) -> None:
    result = run(*args)
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["kind"] == "bad_input"
    assert report["exit_code"] == 2
    assert error in report["error"]
    assert report["hint"] == f"see `{where} --help`"


def test_usage_errors_without_json_are_text_on_stderr() -> None:
    result = run("status", "--bogus")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "No such option: --bogus" in result.stderr
