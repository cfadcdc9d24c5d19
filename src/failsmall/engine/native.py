"""The compiled part of the engine (`_native.c` and `_jsonwalk.c`, linked to libhs): JSON bodies
and documents to fields, and the signature scanner's per-value work. It is built by `pip install`
(see `setup.py`); there is no fallback to the Python reference implementations, which tests
compare it with."""

from __future__ import annotations

try:
    from failsmall.engine import _native as extension
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "the engine's compiled part (src/failsmall/engine/_native.c) is not built: install a C "
        "compiler and the Hyperscan library and headers (Debian/Ubuntu: `apt-get install gcc "
        "libhyperscan-dev`), then reinstall the package (`pip install -e .` in a checkout)"
    ) from exc

add_fields = extension.add_fields
flatten_json = extension.flatten_json
json_fields = extension.json_fields

__all__ = ["add_fields", "extension", "flatten_json", "json_fields"]
