"""`failsmall keygen | build | verify | inspect | schema`: authoring and offline testing."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.progress import Progress

from failsmall.build import (
    BuildError,
    ConfigError,
    CorpusError,
    KeyFileError,
    build_bundle,
    generate_keypair,
    read_bundle_file,
    read_corpus,
    read_corpus_cases,
    read_private_key,
    read_public_keys,
    verify_bundle,
    write_bundle_file,
)
from failsmall.build.corpus import BodyRejected, read_requests, within_buffer
from failsmall.build.verify import VerifyReport
from failsmall.cli.output import (
    DataTable,
    Exit,
    JsonOption,
    console,
    err_console,
    fail,
    json_option,
    plain,
    print_json,
)
from failsmall.engine import Engine, EngineBuildError
from failsmall.engine.outcomes import verdict_to_dict
from failsmall.engine.pipeline import EngineState
from failsmall.engine.request import Request
from failsmall.engine.signatures.fields import signature_fields
from failsmall.model import Bundle, BundleError
from failsmall.model.envelope import SignedBundle

TrustOption = Annotated[
    list[Path] | None,
    typer.Option("--trust", help="Public key(s) to verify the bundle signature with."),
]


def keygen(
    key: Annotated[Path, typer.Argument(help="Where to write the private key (PEM).")],
    json_out: JsonOption = False,
) -> None:
    """Generate an Ed25519 signing key (0600) and its public half beside it, as .pub (0644)."""
    try:
        public, kid = generate_keypair(key)
    except (KeyFileError, OSError) as exc:
        fail(str(exc), "choose another path or delete the old key on purpose")
    if json_out:
        print_json({"private_key": str(key), "public_key": str(public), "key_id": kid})
        return
    console.print(f"[green]✓[/] signing key [bold]{key}[/] (mode 600), public key {public}")
    console.print(f"  key id [cyan]{kid}[/] — give {public} to nodes with --trust")


def build(
    config_dir: Annotated[Path, typer.Argument(help="Config directory (bundle.yaml, rulesets/).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the signed bundle.")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (see keygen).")],
    json_out: JsonOption = False,
) -> None:
    """Validate, compile (CEL, signatures, capacities) and sign a config directory."""
    try:
        private = read_private_key(key)
    except KeyFileError as exc:
        fail(str(exc), "create one with `failsmall keygen KEY`")
    try:
        signed = build_bundle(config_dir, private)
    except ConfigError as exc:
        _report_problems([str(p) for p in exc.problems])
    except BuildError as exc:
        _report_problems(exc.problems)
    write_bundle_file(signed, out)
    bundle = signed.bundle
    summary = {
        "bundle": str(out),
        "digest": signed.digest,
        "key_id": signed.key_id,
        "rulesets": len(bundle.rulesets),
        "rules": sum(len(rs.rules) for rs in bundle.rulesets),
        "bot_features": bundle.bot.feature_file.slots,
        "rate_limits": len(bundle.rate_limits),
        "origins": len(bundle.origins),
    }
    if json_out:
        print_json(summary)
        return
    console.print(f"[green]✓[/] built [bold]{out}[/]")
    table = DataTable(show_header=False, box=None, padding=(0, 2))
    for name, value in summary.items():
        table.add_row(name, str(value))
    console.print(table)


def _report_problems(problems: list[str]) -> NoReturn:
    fail(
        f"build failed with {len(problems)} problem(s); no bundle was written",
        problems=problems,
    )


def _load(bundle_path: Path, trust: list[Path] | None) -> SignedBundle:
    try:
        return read_bundle_file(bundle_path, read_public_keys(trust or []))
    except (BundleError, KeyFileError) as exc:
        fail(str(exc), "rebuild it with `failsmall build`, or check the --trust key")


def verify(
    bundle_path: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Signed bundle file.")],
    corpus: Annotated[
        Path,
        typer.Option(
            "--corpus", help="Requests, one JSON per line; a line's `expect` is its verdict."
        ),
    ],
    trust: TrustOption = None,
    json_out: JsonOption = False,
) -> None:
    """Run a corpus through the real engine, as authored and with every rule in every state.

    Fails when an outcome errors, or when a verdict differs from the one its line expects."""
    signed = _load(bundle_path, trust)
    try:
        cases = list(read_corpus_cases(corpus))
    except CorpusError as exc:
        fail(str(exc))
    requests = [request for request, _ in cases]
    expected = [expectation for _, expectation in cases]
    rules = sum(len(rs.rules) for rs in signed.bundle.rulesets)
    with Progress(console=err_console, transient=True, disable=json_out) as progress:
        task = progress.add_task(
            f"{rules} rules × 3 states × {len(requests)} requests", total=rules * 3
        )
        report = verify_bundle(
            signed.bundle, requests, on_variant=lambda: progress.advance(task), expected=expected
        )
    changes = [r for r in report.results if r.changed]
    if json_out:
        print_json(
            {
                "ok": report.ok,
                "digest": signed.digest,
                "requests": report.requests,
                "variants": report.variants,
                "authored": dict(Counter(report.authored)),
                "errored": [asdict(e) for e in report.errored],
                "expectations": report.expectations,
                "mismatches": [asdict(m) for m in report.mismatches],
                "changes": [
                    {"rule": r.rule, "state": r.state.value, "changed": r.changed} for r in changes
                ],
            }
        )
    else:
        console.print(
            f"verified [bold]{signed.digest[:19]}…[/]: {report.requests} requests, "
            f"{report.variants} rule/state variants"
        )
        console.print(
            "authored verdicts: "
            + ", ".join(f"{k} ×{v}" for k, v in sorted(Counter(report.authored).items()))
        )
        if changes:
            table = DataTable(title="verdict changes when a rule is forced into a state")
            table.add_column("rule")
            table.add_column("state")
            table.add_column("verdicts changed", justify="right")
            for r in sorted(changes, key=lambda r: -r.changed)[:30]:
                table.add_row(r.rule, r.state.value, str(r.changed))
            console.print(table)
        if not report.errored:
            console.print("[green]✓ no errored outcome[/] in any rule state")
        else:
            console.print(f"[bold red]✗ {len(report.errored)} errored outcome(s)[/]")
            for e in report.errored[:20]:
                console.print(
                    plain(f"  {e.variant} request #{e.request_index}: {e.where}: {e.error}")
                )
        _print_mismatches(report)
    if not report.ok:
        raise typer.Exit(int(Exit.FAILED))


def _print_mismatches(report: VerifyReport) -> None:
    if not report.expectations:
        return
    if not report.mismatches:
        console.print(f"[green]✓ {report.expectations} expected verdict(s) met[/]")
        return
    table = DataTable(
        "request #", "request", "expected", "got",
        title=f"{len(report.mismatches)} verdict(s) differ from the expected",
    )  # fmt: skip
    for m in report.mismatches[:50]:
        table.add_row(str(m.request_index + 1), m.request[:80], m.expected, m.got)
    console.print(table)


def inspect(
    bundle_path: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Signed bundle file.")],
    requests_path: Annotated[
        Path, typer.Option("--requests", help="Requests, one JSON per line ('-' for stdin).")
    ],
    trust: TrustOption = None,
    json_out: Annotated[bool, json_option("One JSON verdict per line.")] = False,
) -> None:
    """The offline rule tester: one verdict per request, from the production engine."""
    signed = _load(bundle_path, trust)
    try:
        engine = Engine.build(signed.bundle)
    except EngineBuildError as exc:
        fail("; ".join(exc.problems))
    state = engine.new_state(seed=0)
    table = DataTable(
        "#", "request", "decision", "status", "matched rules", "bot",
        title=f"verdicts for {bundle_path.name}",
    )  # fmt: skip
    try:
        requests = (
            read_requests(sys.stdin.buffer, "-")
            if str(requests_path) == "-"
            else read_corpus(requests_path)
        )
        for number, request in enumerate(requests, start=1):
            _inspect_one(engine, state, number, request, table, json_out)
    except CorpusError as exc:
        fail(str(exc), "one JSON object per line, separated by \\n")
    if not json_out:
        console.print(table)


def _inspect_one(
    engine: Engine,
    state: EngineState,
    number: int,
    request: Request,
    table: DataTable,
    json_out: bool,
) -> None:
    seen = within_buffer(request, engine.limits)
    if isinstance(seen, BodyRejected):
        result: dict[str, object] = {
            "decision": "block",
            "status": 413,
            "matched_rules": [],
            "bot_score": "not_computed",
            "modules": [],
            "rules": [],
            "reason": f"body of {seen.size} bytes exceeds the WAF buffer ({seen.buffer})",
        }
    else:
        verdict = engine.evaluate(seen, state)
        result = verdict_to_dict(verdict)
        fields = signature_fields(engine.waf, seen, verdict.matched_rules, engine.limits)
        if fields:
            result["fields"] = fields
    result.update(method=request.method, host=request.host, path=request.path)
    if json_out:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        table.add_row(
            str(number),
            f"{request.method} {request.uri[:60]}",
            str(result["decision"]),
            str(result["status"]),
            ", ".join(map(str, result["matched_rules"]))[:60],  # type: ignore[call-overload]
            str(result["bot_score"]),
        )


def schema(
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write to a file.")] = None,
) -> None:
    """Print the JSON Schema of a bundle, for editors to validate and complete the YAML."""
    text = json.dumps(Bundle.model_json_schema(), indent=2)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.write_text(text + "\n", encoding="utf-8")
        console.print(f"[green]✓[/] schema written to {out}")


def register(app: typer.Typer) -> None:
    for command in (keygen, build, verify, inspect, schema):
        app.command()(command)
