"""Run a script with the package's compiled modules loaded from their Python source.

    python bench/interpreted.py SCRIPT [ARGS...]

`pip install` compiles the modules listed in pyproject.toml's `[tool.failsmall]` with mypyc, and
a compiled module shadows its `.py`. This runs SCRIPT (as `python SCRIPT ARGS...` would) with
each of them imported from its source instead, so that the interpreter's results can be held
to the compiled ones: `bench/verdicts.py` run both ways must print the same digest
(`tests/engine/test_compiled_matches_source.py`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import runpy
import sys
import tomllib
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


class SourceFirst(importlib.abc.MetaPathFinder):
    """Finds each compiled module of the tree whose sources are in `src` as its `.py` beside
    its extension, and leaves the rest alone (a tree that compiles none: everything)."""

    def __init__(self, src: Path) -> None:
        self.src = src
        tool = tomllib.loads((src.parent / "pyproject.toml").read_text()).get("tool", {})
        self.compiled = frozenset(tool.get("failsmall", {}).get("compiled-python", []))

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.compiled:
            return None
        source = self.src / (fullname.replace(".", "/") + ".py")
        loader = importlib.machinery.SourceFileLoader(fullname, str(source))
        return importlib.util.spec_from_file_location(fullname, source, loader=loader)


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python bench/interpreted.py SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    sys.meta_path.insert(0, SourceFirst(ROOT / "src"))
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = str(Path(script).resolve().parent)
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
