"""Settings for the whole suite."""

from __future__ import annotations

import hashlib
import importlib
import tomllib
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests assert behaviour, never speed: on a loaded 2-core CI machine one example may
# take longer than hypothesis' default 200 ms deadline without anything being wrong.
settings.register_profile("failsmall", deadline=None)
settings.load_profile("failsmall")


def _stale_compiled_modules() -> list[str]:
    """The modules `pip install` compiles with mypyc (pyproject.toml) that are not loaded
    compiled, or whose source is not what they were compiled from (setup.py's BUILT_FROM)."""
    root = Path(__file__).resolve().parent.parent
    built_from = root / "src" / "failsmall" / "compiled-python.sha256"
    if not built_from.exists():
        return [f"{built_from.name} is missing"]
    hashes = dict(line.split("  ")[::-1] for line in built_from.read_text().splitlines())
    listed = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["failsmall"]
    problems = []
    for name in listed["compiled-python"]:
        path = "src/" + name.replace(".", "/") + ".py"
        loaded = Path(importlib.import_module(name).__file__ or "")
        if loaded.suffix != ".so":
            problems.append(f"{name} is not compiled (loaded from {loaded.name})")
        elif hashes.get(path) != hashlib.sha256((root / path).read_bytes()).hexdigest():
            problems.append(f"{name} was edited after it was compiled")
    return problems


def pytest_sessionstart(session: pytest.Session) -> None:
    """Tests run the code the node runs: refuse a build older than its source."""
    problems = _stale_compiled_modules()
    if problems:
        pytest.exit(
            "the compiled modules do not match their source: "
            + "; ".join(problems)
            + ". Rebuild them: `.venv/bin/python setup.py build_ext --inplace` "
            "(or reinstall: `.venv/bin/pip install -e .`)",
            returncode=4,
        )
