"""The docs say only what the code backs: every "(tested" claim names a test that the README's
test command runs, every rule id in a command exists, and file names match what the code writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from failsmall.build import generate_keypair, load_config_dir

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _claims() -> list[tuple[str, str]]:
    """(where, the text of the parenthesis) for every "(tested ..." in the docs."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"\(tested[^)]*\)", text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(0)))
    return found


def test_every_tested_claim_names_a_test_that_the_default_run_collects() -> None:
    claims = _claims()
    assert claims, "the docs make no '(tested' claim any more: drop this test"
    node_ids = []
    for where, claim in claims:
        named = TEST_ID.search(claim)
        assert named, f"{where}: {claim!r} does not name its test as `tests/file.py::test_name`"
        path, name = named.groups()
        source = (ROOT / path).read_text(encoding="utf-8")
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{where}: no {name} in {path}"
        node_ids.append(f"{path}::{name}")
    # The README's test command is `pytest -q` with pyproject's options: each named test must be
    # collected by it, not deselected.
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *node_ids],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    listed = set(collected.stdout.split())
    missing = [n for n in node_ids if not any(item.startswith(n) for item in listed)]
    assert not missing, f"not run by the README's test command: {missing}\n{collected.stdout}"


def test_rule_ids_in_killswitch_commands_exist_in_the_example_bundle() -> None:
    bundle = load_config_dir(ROOT / "examples" / "site")
    rule_ids = {rule.id for ruleset in bundle.rulesets for rule in ruleset.rules}
    used = {
        match.group(1)
        for path in DOCS
        for match in re.finditer(r"killswitch (?:set|clear) ([\w.-]+)", path.read_text())
    }
    assert used, "no killswitch command in the docs"
    assert used <= rule_ids, f"unknown rule ids in the docs: {sorted(used - rule_ids)}"


def test_the_public_key_file_the_docs_name_is_the_one_keygen_writes(tmp_path: Path) -> None:
    public, _ = generate_keypair(tmp_path / "keys" / "signing.key")
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert f"keys/{public.name}" in operations
    assert ".key.pub" not in operations
