"""Durable files in a node's state directory, written so that a kill -9 at any instant leaves
either the old or the new content, never a mix: write a temp file, fsync it, rename it over the
target, fsync the directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class StateDirError(Exception):
    """The state directory cannot be used (missing permissions, not a directory, disk full)."""


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StateDirError(f"cannot write {path}: {exc}") from exc


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, sort_keys=True).encode())


def read_json(path: Path) -> Any:
    """The JSON in `path`; raises FileNotFoundError, or StateDirError when it is unreadable."""
    raw = path.read_bytes()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateDirError(f"{path} is not valid JSON: {exc}") from exc


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(f"cannot create state directory {path}: {exc}") from exc
    if not os.access(path, os.W_OK):
        raise StateDirError(f"state directory {path} is not writable")
    return path
