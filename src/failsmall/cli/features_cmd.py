"""`failsmall features ingest | generate | publish`: bot feature files learned from an analytics
store, guarded before they reach the fleet."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
import yaml
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from failsmall.build import (
    BuildError,
    ConfigError,
    KeyFileError,
    read_bundle_file,
    read_private_key,
)
from failsmall.build.loader import load_config_dir
from failsmall.cli.control_client import (
    ControlClient,
    ControlOption,
    JsonOption,
    TokenOption,
)
from failsmall.cli.output import Exit, console, err_console, fail, print_json
from failsmall.cli.push_cmd import wait_for_rollout
from failsmall.features.fit import DEFAULT_THRESHOLD, NotEnoughRows, Quality
from failsmall.features.generate import (
    DEFAULT_HELD_OUT,
    Generated,
    generate_feature_file,
    read_feature_data,
    write_feature_file,
)
from failsmall.features.guards import DEFAULT_MAX_DELTA, Acceptance, GuardRefused
from failsmall.features.ingest import (
    Ingested,
    IngestError,
    ingest_access_log,
    ingest_generated,
)
from failsmall.features.metadata import SchemaError
from failsmall.features.publish import (
    DecisionUnrecorded,
    PublishRejected,
    PublishState,
    publish,
    who,
)
from failsmall.features.source import Source, SourceError, open_source
from failsmall.features.traffic import candidate_features, generate
from failsmall.model import Bundle, BundleError
from failsmall.model.bot import Feature, FeatureFile
from failsmall.model.envelope import key_id
from failsmall.model.text import printable

features_app = typer.Typer(
    help="Bot feature files: ingest traffic, generate weights, publish through the rollout.",
    no_args_is_help=True,
)

DEFAULT_TABLE = "http_requests_features"
SourceOption = Annotated[
    str, typer.Option("--source", help="sqlite:PATH, chdb:PATH or clickhouse://host:port/db.")
]
TableOption = Annotated[str, typer.Option("--table", help="The feature table.")]


def _safe(text: str) -> str:
    """User data for the terminal: no control characters, no rich markup."""
    return escape(printable(text))


def _fail(json_out: bool, message: str, problems: list[str], hint: str, code: Exit) -> NoReturn:
    """The shared error report (`--json` is already known to `fail` through `JsonOption`)."""
    fail(message, hint, code, problems)


def _open(url: str, json_out: bool) -> Source:
    try:
        return open_source(url)
    except SourceError as exc:
        _fail(json_out, str(exc), [], "check the --source URL", Exit.BAD_INPUT)


def _feature_file(path: Path, json_out: bool) -> FeatureFile:
    try:
        return FeatureFile.model_validate(read_feature_data(path))
    except (OSError, ValueError, yaml.YAMLError, ValidationError) as exc:
        _fail(json_out, f"cannot read feature file {path}: {exc}", [], "", Exit.BAD_INPUT)


@features_app.command()
def ingest(
    source: SourceOption,
    table: TableOption = DEFAULT_TABLE,
    access_log: Annotated[
        list[Path] | None,
        typer.Option("--access-log", help="A node's access log (JSON lines with 'bf')."),
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option("--features", help="The feature file the nodes ran (its columns)."),
    ] = None,
    generated: Annotated[
        int, typer.Option("--generate", help="Add this many labelled generated requests.")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated traffic.")] = 0,
    json_out: JsonOption = False,
) -> None:
    """Load per-request feature values and labels into TABLE."""
    if not access_log and not generated:
        _fail(
            json_out,
            "nothing to ingest",
            [],
            "pass --access-log FILE or --generate N",
            Exit.BAD_INPUT,
        )
    ran: list[Feature] = list(_feature_file(features, json_out).features) if features else []
    store = _open(source, json_out)
    reports: list[tuple[str, Ingested]] = []
    try:
        with Progress(console=console, disable=json_out, transient=True) as progress:
            for log in access_log or []:
                progress.add_task(f"ingesting {log}", total=None)
                reports.append((str(log), ingest_access_log(store, table, log, ran)))
            if generated:
                progress.add_task(f"generating {generated} requests", total=None)
                candidates = ran or candidate_features()
                traffic = generate(generated, seed)
                reports.append(
                    (
                        f"generated (seed {seed})",
                        ingest_generated(store, table, traffic, candidates),
                    )
                )
    except (IngestError, SourceError, ValueError) as exc:
        _fail(json_out, str(exc), [], "nothing after the failing line was written", Exit.BAD_INPUT)
    finally:
        store.close()
    if json_out:
        print_json(
            {"source": source, "table": table, "ingested": {n: r.to_dict() for n, r in reports}}
        )
        return
    out = Table(title=f"ingested into {_safe(table)}")
    for column in ("from", "rows", "bots", "humans", "unscored", "unlabelled", "columns"):
        out.add_column(column, justify="left" if column == "from" else "right")
    for name, r in reports:
        out.add_row(
            _safe(name),
            *(str(v) for v in (r.rows, r.bots, r.humans, r.unscored, r.unlabelled)),
            str(len(r.columns)),
        )
    console.print(out)


def _quality_table(generated: Generated, compare: Path | None) -> Table:
    out = Table(title=f"held-out quality (bot = score < {generated.quality.threshold:g})")
    for column in ("file", "rows", "precision", "recall", "humans challenged"):
        out.add_column(column, justify="left" if column == "file" else "right")
    rows: list[tuple[str, Quality]] = [("learned", generated.quality)]
    if generated.compared is not None and compare is not None:
        rows.append((_safe(str(compare)), generated.compared))
    for name, q in rows:
        out.add_row(
            name, str(q.rows), f"{q.precision:.3f}", f"{q.recall:.3f}", f"{q.humans_challenged:.2%}"
        )
    return out


def run_generate(
    source: str,
    table: str,
    held_out: float,
    threshold: float,
    compare: FeatureFile | None,
    json_out: bool,
) -> Generated:
    store = _open(source, json_out)
    try:
        return generate_feature_file(
            store, table, held_out_share=held_out, threshold=threshold, compare=compare
        )
    except SchemaError as exc:
        _fail(
            json_out,
            f"the columns of {table} cannot make a feature file",
            exc.problems,
            "",
            Exit.BAD_INPUT,
        )
    except (SourceError, NotEnoughRows) as exc:
        _fail(json_out, str(exc), [], "", Exit.FAILED)
    finally:
        store.close()


@features_app.command("generate")
def generate_cmd(
    source: SourceOption,
    out: Annotated[Path, typer.Option("--out", help="Where to write the feature file.")],
    table: TableOption = DEFAULT_TABLE,
    compare: Annotated[
        Path | None,
        typer.Option("--compare", help="Score this feature file on the same held-out rows."),
    ] = None,
    held_out: Annotated[
        float, typer.Option("--held-out", min=0.05, max=0.5, help="Share of rows held out.")
    ] = DEFAULT_HELD_OUT,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Scores under this count as bots.")
    ] = DEFAULT_THRESHOLD,
    json_out: JsonOption = False,
) -> None:
    """Learn per-feature weights from TABLE and write a feature file."""
    baseline = _feature_file(compare, json_out) if compare else None
    started = time.perf_counter()
    generated = run_generate(source, table, held_out, threshold, baseline, json_out)
    try:
        write_feature_file(generated.data, out)
    except OSError as exc:
        _fail(json_out, f"cannot write {out}: {exc.strerror}", [], "", Exit.FAILED)
    seconds = time.perf_counter() - started
    warning = generated.columns.warning()
    if json_out:
        print_json(
            {
                "out": str(out),
                "version": generated.data["version"],
                "features": len(generated.data["features"]),
                "fitted_rows": generated.fitted_rows,
                "quality": generated.quality.to_dict(),
                "compared": generated.compared.to_dict() if generated.compared else None,
                "duplicates": generated.columns.duplicates,
                "warning": warning,
                "seconds": round(seconds, 3),
            }
        )
        return
    if warning:
        err_console.print(f"[bold yellow]warning:[/] {_safe(warning)}")
    console.print(
        f"wrote [bold]{_safe(str(out))}[/] version {generated.data['version']}: "
        f"{len(generated.data['features'])} features from {generated.fitted_rows} rows "
        f"in {seconds:.2f} s"
    )
    console.print(_quality_table(generated, compare))


class ControlPlaneClient:
    """The control plane through the CLI's client: push declared `content`, wait, and record
    decisions in its audit log."""

    def __init__(self, client: ControlClient, timeout_s: float, quiet: bool) -> None:
        self.client, self.timeout_s, self.quiet = client, timeout_s, quiet

    def push(self, envelope: bytes) -> dict[str, Any]:
        try:
            return dict(self.client.post("/v1/bundles", envelope, **{"class": "content"}))
        except typer.Exit as exc:
            raise PublishRejected("the control plane refused the bundle (see above)") from exc

    def wait(self, rollout_id: str) -> dict[str, Any]:
        return wait_for_rollout(self.client, rollout_id, self.timeout_s, self.quiet)

    def record(self, action: str, reason: str, details: dict[str, Any]) -> None:
        body = {"action": action, "reason": reason, "details": details}
        headers = {"Authorization": f"Bearer {self.client.token}"} if self.client.token else {}
        try:
            response = httpx.post(
                f"{self.client.url}/v1/audit",
                json=body,
                headers=headers,
                timeout=self.client.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise DecisionUnrecorded(
                f"not recorded in the audit log: cannot reach the control plane at "
                f"{self.client.url} ({exc})",
                [],
            ) from exc
        if response.status_code != 201:
            try:
                error = str(response.json().get("error", response.text))
            except (ValueError, AttributeError):
                error = response.text[:200]
            raise DecisionUnrecorded(
                f"not recorded in the audit log: the control plane answered "
                f"{response.status_code}: {error}",
                [],
            )


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 30s, 5m or 1h")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2] or "s"]


@features_app.command("publish")
def publish_cmd(
    file: Annotated[
        Path, typer.Argument(help="The feature file (regenerated first with --every).")
    ],
    key: Annotated[Path, typer.Option("--key", help="The signing key (PEM).")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Config directory the bundle is built from.")
    ] = None,
    base: Annotated[
        Path | None, typer.Option("--base", help="Or: a signed bundle file to carry the file.")
    ] = None,
    state: Annotated[
        Path, typer.Option("--state", help="Where the last published file is kept.")
    ] = Path(".failsmall-features"),
    capacity: Annotated[
        int | None, typer.Option("--capacity", help="Feature slots (default: the bundle's).")
    ] = None,
    max_delta: Annotated[
        float, typer.Option("--max-delta", help="Largest share of change without acceptance.")
    ] = DEFAULT_MAX_DELTA,
    accept_delta: Annotated[
        bool, typer.Option("--accept-delta", help="Publish past the delta guard (with --reason).")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why the delta is accepted.")] = "",
    every: Annotated[
        str, typer.Option("--every", help="Regenerate from --source and publish every 5m, ...")
    ] = "",
    times: Annotated[int, typer.Option("--times", help="With --every: cycles (0: forever).")] = 0,
    source: Annotated[str, typer.Option("--source", help="With --every: the source.")] = "",
    table: TableOption = DEFAULT_TABLE,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait per rollout.")
    ] = 600.0,
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Guard FILE, build a bundle with it and roll it out (class content, canary first). Every
    decision is recorded in the control plane's audit log (`failsmall audit`); the token needs
    the operator role."""
    if (config is None) == (base is None):
        _fail(
            json_out,
            "say what the bundle is built from",
            [],
            "pass --config DIR or --base BUNDLE",
            Exit.BAD_INPUT,
        )
    if accept_delta and not reason.strip():
        _fail(
            json_out,
            "--accept-delta needs --reason",
            [],
            "say why the change is intended",
            Exit.BAD_INPUT,
        )
    if every and not source:
        _fail(
            json_out,
            "--every regenerates the file",
            [],
            "pass --source URL (and --table)",
            Exit.BAD_INPUT,
        )
    period = _duration(every) if every else 0.0
    try:
        signing = read_private_key(key)
        bundle: Bundle
        if config is not None:
            bundle = load_config_dir(config)
        else:
            assert base is not None
            trusted = {key_id(signing.public_key()): signing.public_key()}
            bundle = read_bundle_file(base, trusted).bundle
    except (KeyFileError, ConfigError, BuildError, BundleError, OSError) as exc:
        _fail(json_out, str(exc), [], "", Exit.BAD_INPUT)
    pipeline = PublishState(state)
    accepted = Acceptance(who(), reason.strip()) if accept_delta else None
    control_plane = ControlPlaneClient(ControlClient.resolve(control, token), timeout, json_out)
    cycle, failures = 0, 0
    while True:
        cycle += 1
        if every and not _regenerate(source, table, file, json_out):
            failures += 1
        else:
            ok = _publish_once(
                file,
                bundle,
                signing,
                control_plane,
                pipeline,
                capacity,
                max_delta,
                accepted,
                json_out,
                once=not every,
            )
            failures += 0 if ok else 1
        if not every or (times and cycle >= times):
            break
        time.sleep(period)
    if failures:
        raise typer.Exit(int(Exit.FAILED))


def _regenerate(source: str, table: str, file: Path, json_out: bool) -> bool:
    """One cycle's generation; a failure is reported and the next cycle tries again."""
    try:
        store = open_source(source)
        try:
            generated = generate_feature_file(store, table)
        finally:
            store.close()
        write_feature_file(generated.data, file)
    except SchemaError as exc:
        _report(json_out, {"outcome": "failed", "error": str(exc), "problems": exc.problems})
        return False
    except (SourceError, NotEnoughRows, OSError) as exc:
        _report(json_out, {"outcome": "failed", "error": str(exc), "problems": []})
        return False
    if generated.columns.warning() and not json_out:
        err_console.print(f"[bold yellow]warning:[/] {_safe(generated.columns.warning())}")
    return True


def _publish_once(
    file: Path,
    bundle: Bundle,
    signing: Any,
    control: ControlPlaneClient,
    pipeline: PublishState,
    capacity: int | None,
    max_delta: float,
    accepted: Acceptance | None,
    json_out: bool,
    once: bool,
) -> bool:
    try:
        data = read_feature_data(file)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        _fail(json_out, f"cannot read {file}: {exc}", [], "", Exit.BAD_INPUT)
    previous = pipeline.previous()
    if not once and previous is not None and data.get("version") == previous.version:
        _report(json_out, {"version": data.get("version"), "outcome": "unchanged"})
        return True
    try:
        result = publish(
            data,
            base=bundle,
            key=signing,
            control=control,
            state=pipeline,
            capacity=capacity,
            max_delta=max_delta,
            accepted=accepted,
        )
    except GuardRefused as exc:
        return _refused(
            json_out,
            once,
            f"feature file {data.get('version')!r} refused; nothing was pushed",
            exc.problems,
        )
    except PublishRejected as exc:
        return _refused(json_out, once, str(exc), [])
    except DecisionUnrecorded as exc:
        unrecorded = "check the control plane and the token's role (operator or admin)"
        return _refused(json_out, once, str(exc), exc.problems, unrecorded)
    _report(
        json_out,
        {
            "version": result.version,
            "outcome": "published",
            "digest": result.digest,
            "rollout_id": result.rollout_id,
            "guards": result.guards.to_dict(),
        },
    )
    return True


def _refused(
    json_out: bool,
    once: bool,
    message: str,
    problems: list[str],
    hint: str = "the fleet stays on its last good bundle; `failsmall audit` shows why",
) -> bool:
    if once:
        _fail(json_out, message, problems, hint, Exit.FAILED)
    _report(json_out, {"outcome": "refused", "error": message, "problems": problems})
    return False


def _report(json_out: bool, data: dict[str, Any]) -> None:
    if json_out:
        print_json(data)
        return
    outcome = data["outcome"]
    if outcome == "published":
        console.print(
            f"[green]✓[/] published feature file {_safe(str(data['version']))} "
            f"(rollout {data['rollout_id']}, {data['guards']['features']} features)"
        )
    elif outcome == "unchanged":
        console.print(f"feature file {_safe(str(data['version']))} unchanged; nothing pushed")
    else:
        err_console.print(f"[bold red]{outcome}:[/] {_safe(str(data['error']))}")
        for problem in data["problems"]:
            err_console.print(f"  - {_safe(problem)}")


def register(app: typer.Typer) -> None:
    app.add_typer(features_app, name="features")
