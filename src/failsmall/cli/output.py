"""Shared CLI output: a rich console, tables of user data, JSON printing, errors and the exit
codes every command uses.

Data from users and the fleet (names, reasons, rule ids, request lines) is shown through
`plain` or a `DataTable`: control characters and bidirectional overrides appear escaped
(`\\x1b`), and brackets are never read as rich markup, so nothing in the data can move the
cursor, retitle the terminal or restyle the output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import IntEnum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.style import StyleType
from rich.table import Table
from rich.text import Text

from failsmall.model.text import printable

console = Console()
err_console = Console(stderr=True)


class Exit(IntEnum):
    """Exit codes with one meaning across all commands."""

    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    UNREACHABLE = 3
    UNAUTHORISED = 4


def plain(value: object, style: str = "") -> Text:
    """`value` as text for the terminal: unsafe characters escaped, no markup."""
    return Text(printable(str(value)), style=style)


class DataTable(Table):
    """A rich table whose title and string cells are data, shown with `plain`. Style a cell
    by passing a `Text` (or `plain(value, style)`)."""

    def __init__(self, *headers: str, title: str = "", **kwargs: Any) -> None:
        super().__init__(*headers, title=plain(title) if title else None, **kwargs)

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: StyleType | None = None,
        end_section: bool = False,
    ) -> None:
        cells = [plain(cell) if isinstance(cell, str) else cell for cell in renderables]
        super().add_row(*cells, style=style, end_section=end_section)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


_requested = {"json": False}


def start_command() -> None:
    """Forget the options of a command run before in this process."""
    _requested["json"] = False


def _remember_json(value: bool) -> bool:
    if value:
        _requested["json"] = True
    return value


def json_option(help: str = "Print JSON instead of tables.") -> Any:
    """The `--json` option of every command that reports: it also makes `fail` answer in JSON."""
    return typer.Option("--json", help=help, callback=_remember_json)


JsonOption = Annotated[bool, json_option()]


def json_requested() -> bool:
    """Whether the running command (or a group above it) was given `--json`."""
    return _requested["json"]


def fail(
    message: str,
    hint: str = "",
    code: Exit = Exit.BAD_INPUT,
    problems: Sequence[str] = (),
) -> NoReturn:
    """Report an error a person (or, with `--json`, a program) can act on, then exit `code`.

    With `--json` the error goes to standard output in one shape for every command:
    `{"ok": false, "error", "kind", "exit_code", "hint", "problems"}`.
    """
    if json_requested():
        print_json(
            {
                "ok": False,
                "error": message,
                "kind": code.name.lower(),
                "exit_code": int(code),
                "hint": hint,
                "problems": list(problems),
            }
        )
    else:
        err_console.print(Text.assemble(("error: ", "bold red"), plain(message)))
        for problem in problems:
            err_console.print(Text.assemble(("  • ", "red"), plain(problem)))
        if hint:
            err_console.print(Text.assemble(("hint: ", "dim"), plain(hint)))
    raise typer.Exit(int(code))
