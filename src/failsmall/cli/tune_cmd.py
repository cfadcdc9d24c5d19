"""`failsmall tune`: from logged false positives to the narrowest rule exception.

Reads blocked requests from an access log (or `failsmall inspect --json` output), proposes for
each group the narrowest exception (its rules, host, path, method and fields), replays known
attacks in that scope to show what the exception would let through, and writes it to a config
directory's `exceptions.yaml` only with `--accept`. Build and roll out the config as usual.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml
from rich.progress import Progress

from failsmall.build import CorpusError, read_corpus
from failsmall.build.yamlfile import YamlFileError, read_yaml
from failsmall.cli.build_cmd import TrustOption, _load
from failsmall.cli.output import DataTable, Exit, console, err_console, fail, print_json
from failsmall.engine import Engine, EngineBuildError
from failsmall.managed.corpora import FAMILIES, crs_cases
from failsmall.managed.measure import attack_cases
from failsmall.managed.tuning import (
    Exposure,
    KnownAttack,
    Proposal,
    exposure,
    propose,
    read_logged_blocks,
)
from failsmall.model.rules import RuleException

EXCEPTIONS_FILE = "exceptions.yaml"


def tune(
    bundle_path: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Signed bundle file.")],
    log: Annotated[
        Path,
        typer.Option(
            "--log", help="Access log, or `inspect --json` output, holding the false positives."
        ),
    ],
    attacks: Annotated[
        Path | None,
        typer.Option("--attacks", help="Known attacks, one JSON request per line."),
    ] = None,
    crs: Annotated[
        Path | None,
        typer.Option("--crs", help="An OWASP CRS regression-test directory: its PL1 attacks."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Config directory whose exceptions.yaml --accept writes."),
    ] = None,
    accept: Annotated[
        bool, typer.Option("--accept", help="Write the proposals to the config directory.")
    ] = False,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded in each exception).")
    ] = "false positive on logged traffic",
    author: Annotated[str, typer.Option("--author", help="Who (recorded).")] = "",
    trust: TrustOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Propose the narrowest exception for logged false positives; write it with --accept."""
    if accept and config is None:
        _fail(json_out, "--accept needs --config DIR, the config directory to write to")
    signed = _load(bundle_path, trust)
    try:
        blocks = list(read_logged_blocks(_read_lines(log), str(log)))
        known = _known_attacks(attacks, crs)
    except CorpusError as exc:
        _fail(json_out, str(exc))
    if not blocks:
        _fail(
            json_out,
            f"{log} holds no blocked request that names its rules' fields",
            "pass an access log of this version (lines carry `fields`) or `inspect --json` output",
        )
    proposals = propose(blocks, author or getpass.getuser(), reason)
    try:
        base = Engine.build(signed.bundle)
    except EngineBuildError as exc:
        _fail(json_out, "; ".join(exc.problems))
    exposures: list[Exposure] = []
    with Progress(console=err_console, transient=True, disable=json_out) as progress:
        task = progress.add_task("replaying known attacks in scope", total=len(proposals))
        for proposal in proposals:
            exposures.append(exposure(signed.bundle, proposal.exception, known, base))
            progress.advance(task)
    written = _write(config, [p.exception for p in proposals], json_out) if accept else None
    if json_out:
        print_json(
            {
                "proposals": [
                    {
                        "exception": p.exception.model_dump(mode="json"),
                        "requests": p.requests,
                        "attacks_replayed": e.attacks,
                        "attacks_blocked_without": e.blocked_without,
                        "let_through": len(e.let_through),
                        "let_through_by_family": e.by_family(),
                        "let_through_examples": [a.name for a in e.let_through[:10]],
                    }
                    for p, e in zip(proposals, exposures, strict=True)
                ],
                "written": str(written) if written else None,
            }
        )
    else:
        _print(proposals, exposures, bool(known), written, config)


def _fail(json_out: bool, message: str, hint: str = "") -> NoReturn:
    if json_out:
        print_json({"error": message, "hint": hint})
        raise typer.Exit(int(Exit.BAD_INPUT))
    fail(message, hint)


def _read_lines(path: Path) -> list[str]:
    if str(path) == "-":
        return sys.stdin.read().splitlines()
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror}") from exc


def _known_attacks(attacks: Path | None, crs: Path | None) -> list[KnownAttack]:
    known: list[KnownAttack] = []
    if attacks is not None:
        known += [
            KnownAttack(f"{attacks.name}:{i}", "corpus", request)
            for i, request in enumerate(read_corpus(attacks), start=1)
        ]
    if crs is not None:
        if not crs.is_dir():
            raise CorpusError(f"CRS regression tests not found at {crs}")
        known += [
            KnownAttack(case.name, FAMILIES[case.family], case.request)
            for case in attack_cases(crs_cases(crs))
        ]
    return known


def _write(config: Path | None, exceptions: list[RuleException], json_out: bool) -> Path:
    assert config is not None  # checked before anything ran
    if not config.is_dir():
        _fail(json_out, f"config directory {config} not found")
    target = config / EXCEPTIONS_FILE
    existing: list[object] = []
    if target.exists():
        try:
            data = read_yaml(target)
        except YamlFileError as exc:
            _fail(json_out, str(exc), f"fix {target} first; nothing was written")
        if data is not None and not isinstance(data, list):
            _fail(json_out, f"{target} must be a list of exceptions; nothing was written")
        existing = list(data or [])
    known_ids = {item.get("id") for item in existing if isinstance(item, dict)}
    new = [e.model_dump(mode="json", exclude_defaults=True) for e in exceptions]
    added = [item for item in new if item["id"] not in known_ids]
    text = yaml.safe_dump([*existing, *added], sort_keys=False, allow_unicode=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(target)
    return target


def _print(
    proposals: list[Proposal],
    exposures: list[Exposure],
    checked: bool,
    written: Path | None,
    config: Path | None,
) -> None:
    table = DataTable(title=f"{len(proposals)} proposed exception(s), narrowest first")
    for column in ("id", "requests", "rules", "scope", "fields", "attacks let through"):
        table.add_column(column, justify="right" if column == "requests" else "left")
    for proposal, exp in zip(proposals, exposures, strict=True):
        e = proposal.exception
        scope = " ".join([*e.methods, *e.hosts, *e.paths])
        let_through = (
            f"{len(exp.let_through)} of {exp.blocked_without} "
            + " ".join(f"{k}:{v}" for k, v in exp.by_family().items())
            if checked
            else "not checked (pass --crs DIR or --attacks FILE)"
        )
        table.add_row(
            e.id,
            str(proposal.requests),
            ", ".join(e.rules),
            scope,
            ", ".join(e.fields),
            let_through,
        )
    console.print(table)
    if written is not None:
        console.print(f"[green]✓[/] written to {written}; build and roll out the config")
    else:
        where = config if config is not None else "DIR"
        console.print(f"[dim]nothing written: rerun with --accept --config {where} to add them[/]")


def register(app: typer.Typer) -> None:
    app.command()(tune)
