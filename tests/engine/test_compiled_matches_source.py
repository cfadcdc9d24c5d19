"""The engine's compiled modules decide what their Python source decides.

`pip install` compiles the request path with mypyc (pyproject.toml's `[tool.failsmall]`), and
tests and benchmarks run what it compiled. mypyc is a different implementation of the same
source: its `str.lower`, for one, lacks the final-sigma rule on Python 3.11. So
`bench/verdicts.py` runs a corpus through the example site and the managed ruleset twice, once
compiled and once with every compiled module imported from its `.py` (`bench/interpreted.py`),
and the two must write the same verdicts, cache decisions and rate-limit buckets, line for line.

The corpus: the benign requests of `tests/data/benign`, and requests drawn from a seeded
generator that mixes what the engine treats specially (cased and uncased Unicode, final sigma,
full-width and encoded payloads, JSON, forms and multipart bodies, cookies, dotted paths),
plus the blazehttp tuning half when FAILSMALL_BLAZEHTTP names it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENIGN = ROOT / "tests" / "data" / "benign"
BLAZEHTTP = os.environ.get("FAILSMALL_BLAZEHTTP", "")

WORDS = [
    "ΑΣ",
    "ΟΔΥΣΣΕΥΣ",
    "Σ",
    "ς",
    "σ",
    "İstanbul",
    "ǅ",
    "ﬃ",
    "Straße",
    "ＳＥＬＥＣＴ",
    "ＡＬＥＲＴ",
    "union select",
    "UNION/**/SELECT 1,2",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    "<ScRiPt>",
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%252e%252e%252f",
    ";cat /etc/passwd",
    "$(id)",
    "{{7*7}}",
    "${jndi:ldap://x/a}",
    "&lt;svg onload=alert(1)&gt;",
    "&#x3C;img&#x3E;",
    "javascript:alert(1)",
    "php://filter",
    "SLEEP(5)",
    "0x4142",
    "élève",
    "日本語",
    "\u202e",
    "\u0000",
    "\ufeff",
    "a" * 300,
    "Ω",
    "ǰ",
    "ΣΑΣ.",
    "ΑΣ'Σ",
    "hello",
    "42",
    "true",
    "null",
]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))


def _request(rng: random.Random) -> dict[str, object]:
    query = "&".join(f"{_text(rng)[:20]}={_text(rng)}" for _ in range(rng.randint(0, 3)))
    path = "/" + "/".join(
        rng.choice(["api", "login", "static", "a b", "%2e%2e", "Σ", "search"])
        for _ in range(rng.randint(0, 3))
    )
    headers = {
        "Host": rng.choice(
            ["www.example.org", "api.example.org", "EXAMPLE.ORG:8080", "ΣΣ.example"]
        ),
        "User-Agent": rng.choice(
            ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.0", "sqlmap/1.7", _text(rng)]
        ),
        "Cookie": f"session={_text(rng)}; theme={rng.choice(WORDS)}",
        "Accept-Language": rng.choice(["en", "el-GR,el;q=0.9", _text(rng)]),
        f"X-{rng.choice(['Σ', 'Trace', 'ΑΣ'])}": _text(rng),
    }
    line: dict[str, object] = {
        "method": rng.choice(["GET", "GET", "POST", "PUT", "HEAD", "DELETE"]),
        "uri": path + ("?" + query if query else ""),
        "headers": headers,
        "client_ip": rng.choice(["192.0.2.44", "203.0.113.9", "2001:db8::1", "10.0.0.1"]),
    }
    kind = rng.choice(["none", "json", "form", "multipart", "raw"])
    if kind == "json":
        headers["Content-Type"] = "application/json"
        line["body"] = json.dumps(
            {
                _text(rng)[:12]: [_text(rng), {"ΑΣ": _text(rng), "n": rng.randint(0, 9)}]
                for _ in range(rng.randint(1, 5))
            },
            ensure_ascii=rng.random() < 0.5,
        )
    elif kind == "form":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        line["body"] = "&".join(f"{rng.choice(WORDS)}={_text(rng)}" for _ in range(3))
    elif kind == "multipart":
        headers["Content-Type"] = "multipart/form-data; boundary=b0undary"
        parts = ""
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(WORDS)[:10].replace('"', "")
            filename = f'; filename="{_text(rng)[:20]}"' if rng.random() < 0.3 else ""
            extra = "".join(
                f"{rng.choice(['XΣ', 'Xς', 'Content-Type', 'X-Σ'])}: {_text(rng)[:30]}\r\n"
                for _ in range(rng.randint(0, 3))
            )
            parts += (
                f'--b0undary\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n'
                f"{extra}\r\n{_text(rng)}\r\n"
            )
        line["body_b64"] = base64.b64encode((parts + "--b0undary--\r\n").encode()).decode()
    elif kind == "raw":
        headers["Content-Type"] = rng.choice(
            ["text/plain", "application/xml", "application/octet-stream"]
        )
        line["body"] = _text(rng)
    return line


def _verdicts(corpus: Path, interpreted: bool) -> str:
    script = [str(ROOT / "bench" / "verdicts.py")]
    if interpreted:
        script.insert(0, str(ROOT / "bench" / "interpreted.py"))
    done = subprocess.run(
        [sys.executable, *script, *corpus_args(corpus), "--json"],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def corpus_args(corpus: Path) -> list[str]:
    return ["--blazehttp", str(corpus)] if corpus.name == "testcases" else ["--corpus", str(corpus)]


@pytest.mark.slow
def test_compiled_and_source_give_the_same_verdicts(tmp_path: Path) -> None:
    rng = random.Random(20261205)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "benign.jsonl").write_bytes((BENIGN / "benign.jsonl").read_bytes())
    generated = [json.dumps(_request(rng)) for _ in range(3000)]
    (corpus / "generated.jsonl").write_text("\n".join(generated) + "\n")
    compiled = _verdicts(corpus, interpreted=False)
    assert json.loads(compiled)["requests"] == 5500
    assert _verdicts(corpus, interpreted=True) == compiled


@pytest.mark.slow
def test_compiled_and_source_give_the_same_verdicts_on_blazehttp() -> None:
    if not BLAZEHTTP or not Path(BLAZEHTTP).is_dir():
        pytest.skip(
            "blazehttp corpus not given: set FAILSMALL_BLAZEHTTP to the testcases directory "
            "of a chaitin/blazehttp checkout"
        )
    compiled = _verdicts(Path(BLAZEHTTP), interpreted=False)
    assert _verdicts(Path(BLAZEHTTP), interpreted=True) == compiled
