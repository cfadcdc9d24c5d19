"""JSON Lines are split on `\\n` only: a JSON string may hold U+0085, U+2028 or U+2029, which
`str.splitlines()` takes for line breaks."""

from __future__ import annotations

import io
import json
from pathlib import Path

from typer.testing import CliRunner

from failsmall.build.corpus import json_lines, read_corpus
from failsmall.cli.main import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site"
SEPARATORS = "\u0085\u2028\u2029\x1c\x1d\x1e\x0b\x0c"
LINES = [
    {"method": "GET", "uri": "/search?q=a" + SEPARATORS + "b", "headers": {"Host": "shop.example"}},
    {"method": "GET", "uri": "/admin/users", "headers": [["Host", "shop.example"]]},
    {"method": "POST", "uri": "/api/x", "body": "one" + SEPARATORS + "two"},
]
TEXT = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in LINES)


def test_json_lines_splits_on_newline_only() -> None:
    assert len(TEXT.splitlines()) > len(LINES), "the case must trip str.splitlines()"
    stream = io.BytesIO((TEXT.replace("\n", "\r\n", 1)).encode())
    assert [json.loads(text) for _, text in json_lines(stream)] == LINES


def test_read_corpus_keeps_separators_inside_strings(tmp_path: Path) -> None:
    corpus = tmp_path / "requests.jsonl"
    corpus.write_text(TEXT, encoding="utf-8")
    requests = list(read_corpus(corpus))
    assert [r.path for r in requests] == ["/search", "/admin/users", "/api/x"]
    assert requests[0].query == "q=a" + SEPARATORS + "b"
    assert requests[2].body == ("one" + SEPARATORS + "two").encode()


def test_inspect_reads_such_lines_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "signing.key"
    assert runner.invoke(app, ["keygen", str(key)]).exit_code == 0
    bundle = tmp_path / "site.bundle"
    built = runner.invoke(app, ["build", str(EXAMPLE), "-o", str(bundle), "--key", str(key)])
    assert built.exit_code == 0, built.output
    corpus = tmp_path / "requests.jsonl"
    corpus.write_text(TEXT, encoding="utf-8")
    trust = ["--trust", str(key.with_suffix(".pub")), "--json"]
    from_file = runner.invoke(app, ["inspect", str(bundle), "--requests", str(corpus), *trust])
    from_stdin = runner.invoke(
        app, ["inspect", str(bundle), "--requests", "-", *trust], input=TEXT.encode()
    )
    for result in (from_file, from_stdin):
        assert result.exit_code == 0, result.output
        verdicts = [json.loads(line) for line in result.stdout.split("\n") if line]
        assert len(verdicts) == len(LINES)
        assert verdicts[1]["matched_rules"] == ["block-admin-outside-office"]
