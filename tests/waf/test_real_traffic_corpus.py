"""The blazehttp corpus reader and the labelled measurement, on small corpora written here.

The corpus itself is never in the repository; its figures are in docs/waf.md (bench/waf_corpus.py
--blazehttp DIR). These tests write raw requests in its layout and check what is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from failsmall.build.corpus import CorpusError
from failsmall.engine import Engine
from failsmall.managed.corpora import blazehttp_cases
from failsmall.managed.measure import Inspector, managed_bundle, measure_labelled

LEGITIMATE = (
    b"POST /api/v1/search?page=2 HTTP/1.1\r\nHost: shop.example\r\n"
    b"Content-Type: application/json\r\nCookie: theme=dark\r\n\r\n"
    b'{"query": "red shoes", "size": 42}'
)
ATTACK = (
    b"GET /item?id=1%27%20UNION%20SELECT%20password%20FROM%20users--%20 HTTP/1.1\r\n"
    b"Host: shop.example\r\n\r\n"
)


def write(root: Path, name: str, raw: bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


def test_cases_are_parsed_and_labelled_by_suffix(tmp_path: Path) -> None:
    write(tmp_path, "0a/1b/legit.white", LEGITIMATE)
    write(tmp_path, "7f/00/attack.black", ATTACK)
    cases = list(blazehttp_cases(tmp_path))
    assert [(c.name, c.attack) for c in cases] == [
        ("0a/1b/legit.white", False),
        ("7f/00/attack.black", True),
    ]
    legit = cases[0].request
    assert (legit.method, legit.path, legit.query, legit.host) == (
        "POST",
        "/api/v1/search",
        "page=2",
        "shop.example",
    )
    assert legit.body == b'{"query": "red shoes", "size": 42}'


def test_the_held_out_half_is_never_read(tmp_path: Path) -> None:
    write(tmp_path, "00/aa/legit.white", LEGITIMATE)
    for first in ("80", "9c", "a0", "ff"):
        write(tmp_path, f"{first}/00/held-out.black", ATTACK)
    assert [c.name for c in blazehttp_cases(tmp_path)] == ["00/aa/legit.white"]


def test_a_directory_without_cases_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="testcases"):
        list(blazehttp_cases(tmp_path / "missing"))
    write(tmp_path, "8f/00/held-out.white", LEGITIMATE)
    with pytest.raises(CorpusError, match="00-7f"):
        list(blazehttp_cases(tmp_path))


def test_labelled_measurement_counts_by_rule_and_family(tmp_path: Path) -> None:
    write(tmp_path, "01/00/legit.white", LEGITIMATE)
    write(tmp_path, "02/00/attack.black", ATTACK)
    write(tmp_path, "03/00/missed.black", b"GET /harmless HTTP/1.1\r\nHost: x\r\n\r\n")
    inspector = Inspector(Engine.build(managed_bundle(1)))
    result = measure_labelled(inspector, blazehttp_cases(tmp_path))
    assert (result.attacks, result.detected, result.legitimate, result.blocked) == (2, 1, 1, 0)
    assert result.missed == ["03/00/missed.black"]
    assert result.detected_by_family.get("sqli") == 1
    assert result.detected_by_rule and all(r.startswith("fsm-") for r in result.detected_by_rule)
    assert result.detection_rate == 0.5 and result.false_positive_rate == 0.0
