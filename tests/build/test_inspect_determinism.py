"""`failsmall inspect` gives byte-identical verdicts for the same requests, in any order and
under CPU load (DESIGN.md invariant 8): verdicts depend on the request and the bundle only."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from failsmall.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "site"
BENIGN = ROOT / "tests" / "data" / "benign" / "benign.jsonl"
BLAZEHTTP = Path(os.environ.get("FAILSMALL_BLAZEHTTP", "/tmp/blazehttp/testcases"))
SQLI = "1' UNION SELECT username, password FROM users--"
runner = CliRunner()


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    """The example site's bundle without what decides by request history on purpose (rate
    limits, and bot features that count a client's rate): what is left must not depend on it."""
    config = tmp_path / "site"
    shutil.copytree(EXAMPLE, config)
    settings = yaml.safe_load((config / "bundle.yaml").read_text())
    settings.pop("rate_limits", None)
    (config / "bundle.yaml").write_text(yaml.safe_dump(settings))
    features = yaml.safe_load((config / "features.yaml").read_text())
    features["features"] = [f for f in features["features"] if f["kind"] != "rate_over"]
    (config / "features.yaml").write_text(yaml.safe_dump(features))
    key = tmp_path / "keys" / "signing.pem"
    assert runner.invoke(app, ["keygen", str(key)]).exit_code == 0
    bundle = tmp_path / "site.bundle"
    result = runner.invoke(app, ["build", str(config), "-o", str(bundle), "--key", str(key)])
    assert result.exit_code == 0, result.output
    return bundle, key.with_suffix(".pub")


@contextmanager
def cpu_burner() -> Iterator[None]:
    """A process spinning on a CPU for as long as the block runs."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait(timeout=10)


def inspect(bundle: Path, trust: Path, lines: list[str], path: Path) -> list[str]:
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(
        app, ["inspect", str(bundle), "--requests", str(path), "--json", "--trust", str(trust)]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert len(out) == len(lines)
    return out


def line(method: str, uri: str, body: bytes = b"", content_type: str = "") -> str:
    headers = [
        ["Host", "shop.example"],
        ["User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"],
        ["Accept-Language", "en"],
    ]
    if content_type:
        headers.append(["Content-Type", content_type])
    record = {
        "method": method,
        "uri": uri,
        "headers": headers,
        "body_b64": base64.b64encode(body).decode(),
    }
    return json.dumps(record)


def hard_requests() -> list[str]:
    """Requests that cost the WAF the most: big beacons, thousands of fields, limits."""
    events = [
        {"id": i, "type": "timing", "data": json.dumps({"url": f"/app/{i}", "lcp": i % 4000})}
        for i in range(1500)
    ]
    beacon = json.dumps(events).encode()
    form = "&".join(f"f{i}=v{i}" for i in range(3000)) + "&q=" + SQLI
    return [
        line("POST", "/collect", beacon, "application/json"),
        line("POST", "/collect", beacon, "text/plain"),
        line("POST", "/search", form.encode(), "application/x-www-form-urlencoded"),
        line("POST", "/deep", b"[" * 5000 + b"]" * 5000, "application/json"),
        line("GET", "/search?q=" + SQLI.replace(" ", "+")),
        line("POST", "/upload", b"--a\r\n\r\nx", "multipart/form-data; boundary=a; boundary=b"),
    ]


def test_inspect_is_byte_identical_in_any_order_and_under_load(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, trust = signed
    lines = [*BENIGN.read_text().splitlines()[:1500], *hard_requests()]
    first = inspect(bundle, trust, lines, tmp_path / "a.jsonl")
    with cpu_burner():
        backwards = inspect(bundle, trust, lines[::-1], tmp_path / "b.jsonl")
    assert backwards[::-1] == first
    verdicts = [json.loads(v) for v in first[-6:]]
    assert [v["decision"] for v in verdicts] == [
        "allow",
        "allow",
        "block",
        "block",
        "block",
        "block",
    ]
    assert [o["limit"] for o in verdicts[3]["over_limits"]] == ["waf_max_body_depth"]
    assert [o["limit"] for o in verdicts[5]["over_limits"]] == ["multipart_framing"]
    assert not any(
        json.loads(v)["modules"]
        and any(m["outcome"] == "errored" for m in json.loads(v)["modules"])
        for v in first
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_inspect_over_the_blazehttp_corpus_is_byte_identical(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    if not BLAZEHTTP.is_dir():
        pytest.skip(
            f"no blazehttp corpus at {BLAZEHTTP}: clone github.com/chaitin/blazehttp into a "
            "temporary directory and set FAILSMALL_BLAZEHTTP to its testcases directory"
        )
    from failsmall.managed.corpora import raw_http_request

    lines = []
    for first in sorted(BLAZEHTTP.iterdir()):
        if first.name[:1] not in "01234567":  # the 8-f half is held out
            continue
        for path in sorted(first.rglob("*.white")) + sorted(first.rglob("*.black")):
            request = raw_http_request(path.read_bytes())
            record = {
                "method": request.method,
                "uri": request.uri,
                "headers": [list(h) for h in request.headers],
                "body_b64": base64.b64encode(request.body).decode(),
            }
            lines.append(json.dumps(record))
    bundle, trust = signed
    first_run = inspect(bundle, trust, lines, tmp_path / "a.jsonl")
    with cpu_burner():
        backwards = inspect(bundle, trust, lines[::-1], tmp_path / "b.jsonl")
    assert backwards[::-1] == first_run
    assert not any('"outcome": "errored"' in v for v in first_run)
