"""Shared CLI output: a rich console, JSON printing and the exit codes every command uses."""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class Exit(IntEnum):
    """Exit codes with one meaning across all commands."""

    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    UNREACHABLE = 3
    UNAUTHORISED = 4


def printable(text: str) -> str:
    """`text` for a terminal: control characters from user data shown as escapes, and rich
    markup taken literally."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shown.replace("[", "\\[")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def fail(message: str, hint: str = "", code: Exit = Exit.BAD_INPUT) -> NoReturn:
    """Print an error a person can act on, then exit with `code`."""
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}")
    raise typer.Exit(int(code))
