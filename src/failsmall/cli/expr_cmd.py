"""`failsmall expr`: the rule expression language from the command line.

    failsmall expr fields [--json]
    failsmall expr check EXPRESSION [--requests REQUESTS.jsonl] [--config DIR]
                         [--ip-list NAME=ADDR,CIDR,...] [--reference] [--json]

`check` compiles an expression exactly as a bundle build does, then evaluates it on each request of
a corpus; with `--reference` every result is also computed by the reference CEL implementation and
any disagreement fails the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from failsmall.build.corpus import CorpusError, read_corpus
from failsmall.build.loader import ConfigError, load_config_dir
from failsmall.cli.output import DataTable, Exit, JsonOption, console, fail, plain, print_json
from failsmall.engine.expr import (
    FIELDS,
    Expression,
    ExpressionError,
    ExpressionEvalError,
    compile_expression,
)
from failsmall.engine.expr.reference import ReferenceEvalError, reference_evaluate
from failsmall.engine.request import RequestView

expr_app = typer.Typer(
    name="expr",
    help="Rule expressions: list the fields, check and try an expression.",
    no_args_is_help=True,
)


@expr_app.command("fields")
def fields(
    as_json: JsonOption = False,
) -> None:
    """List the fields a rule expression can read, with their CEL types."""
    if as_json:
        print_json([{"field": s.path, "type": s.cel_type, "doc": s.doc} for s in FIELDS.values()])
        return
    table = DataTable(title="rule expression fields")
    table.add_column("field", style="bold")
    table.add_column("CEL type")
    table.add_column("description")
    for spec in FIELDS.values():
        table.add_row(spec.path, spec.cel_type, spec.doc)
    console.print(table)


@dataclass(frozen=True, slots=True)
class _Result:
    """One request's result: `ours` and `reference` are a value or an error text."""

    line: int
    ours: str
    reference: str
    agree: bool


@expr_app.command("check")
def check(
    expression: Annotated[str, typer.Argument(help="The CEL condition, quoted for the shell.")],
    requests: Annotated[
        Path | None, typer.Option("--requests", help="JSON-lines request corpus to evaluate on.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Config directory whose IP lists to use.")
    ] = None,
    ip_list: Annotated[
        list[str] | None,
        typer.Option("--ip-list", help="An IP list as NAME=ADDR,CIDR,... (repeatable)."),
    ] = None,
    reference: Annotated[
        bool, typer.Option("--reference", help="Also evaluate with the reference CEL.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Compile EXPRESSION as a build would; evaluate it on --requests if given.

    Exit codes: 0 fine, 1 an evaluation error or a disagreement with the reference, 2 bad input.
    """
    lists = _ip_lists(config, ip_list or [])
    try:
        compiled = compile_expression(expression, lists)
    except ExpressionError as exc:
        fail(f"the expression does not compile:\n{exc}")
    results: list[_Result] = []
    if requests is not None:
        try:
            for number, request in enumerate(read_corpus(requests), start=1):
                results.append(_evaluate(compiled, RequestView(request), number, reference))
        except (CorpusError, OSError) as exc:
            fail(f"cannot read the requests: {exc}", "one JSON object per line")
    errors = sum(result.ours.startswith("error") for result in results)
    disagreements = sum(not result.agree for result in results)
    if as_json:
        print_json(
            {
                "expression": compiled.source,
                "fields": sorted(compiled.fields),
                "results": [_as_dict(result) for result in results],
                "errors": errors,
                "disagreements": disagreements,
            }
        )
    else:
        console.print(
            f"[green]compiles[/]; reads {', '.join(sorted(compiled.fields)) or 'no field'}"
        )
        if results:
            _print_results(results, reference)
    if errors or disagreements:
        raise typer.Exit(int(Exit.FAILED))


def _as_dict(result: _Result) -> dict[str, Any]:
    return {
        "line": result.line,
        "ours": result.ours,
        "reference": result.reference,
        "agree": result.agree,
    }


def _evaluate(compiled: Expression, view: RequestView, number: int, reference: bool) -> _Result:
    ours: str
    try:
        ours = repr(compiled.evaluate(view))
    except ExpressionEvalError as exc:
        ours = f"error: {exc}"
    if not reference:
        return _Result(number, ours, "", True)
    fresh = RequestView(view.request, view.bot_score, view.signature_hits)
    try:
        theirs = repr(reference_evaluate(compiled, fresh))
    except ReferenceEvalError as exc:
        theirs = f"error: {exc}"
    both_failed = ours.startswith("error") and theirs.startswith("error")
    return _Result(number, ours, theirs, both_failed or ours == theirs)


def _print_results(results: list[_Result], reference: bool) -> None:
    table = DataTable(title="results")
    table.add_column("line", justify="right")
    table.add_column("result")
    if reference:
        table.add_column("reference")
        table.add_column("agree")
    for result in results:
        row: list[str | Text] = [str(result.line), result.ours]
        if reference:
            row += [result.reference, "yes" if result.agree else plain("NO", "bold red")]
        table.add_row(*row)
    console.print(table)


def _ip_lists(config: Path | None, options: list[str]) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    if config is not None:
        try:
            lists.update(load_config_dir(config).ip_lists)
        except ConfigError as exc:
            fail(f"cannot load the config directory {config}: {exc}")
    for option in options:
        name, sep, entries = option.partition("=")
        if not sep or not name:
            fail(
                f"--ip-list {option!r} is not NAME=ADDR,CIDR,...",
                "e.g. --ip-list office=10.0.0.0/8",
            )
        lists[name] = [entry for entry in entries.split(",") if entry]
    return lists


def register(app: typer.Typer) -> None:
    """Add the `expr` command group to the `failsmall` command."""
    app.add_typer(expr_app)
