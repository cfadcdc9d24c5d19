"""Detection and false positives of the `failsmall-managed` ruleset, through the real engine.

Usage: python bench/waf_corpus.py [--json] [--corpus DIR] [--benign PATH] [--blazehttp DIR]
                                  [--paranoia N [N ...]]

Reads the OWASP CRS regression tests in place (default `../shared/corpora/crs-regression`
relative to the repository root; never copied), turns each test input into a request and runs
it through `Engine.build(bundle)` of a bundle whose managed phase executes `failsmall-managed`
at each paranoia level asked for (default 1 and 2). For each attack family it counts the CRS
paranoia-level-1 tests that expect a detection and how many the engine blocks; then the share of
the benign corpus blocked; then, with `--blazehttp DIR` (the `testcases` directory of a
chaitin/blazehttp checkout, GPL-3.0, read in place; only the cases under 00-7f, the tuning half),
real traffic: the share of legitimate requests blocked and of attacks detected, per rule and
per family; then inspection time per request, against a baseline measured in the same run: the
same pipeline with an empty managed phase. Exit status: 0 when every target is met, 1 when one
is missed, 2 on bad input. The blazehttp targets apply to paranoia level 1, the level shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from failsmall.build.corpus import CorpusError
from failsmall.engine import Engine, RequestView
from failsmall.engine.request import Request
from failsmall.engine.signatures import TRANSFORMS, target_values
from failsmall.engine.signatures.transforms import features, triggers
from failsmall.managed import managed_ruleset
from failsmall.managed.corpora import (
    CorpusCase,
    LabelledRequest,
    benign_requests,
    blazehttp_cases,
    crs_cases,
)
from failsmall.managed.measure import (
    BenignResult,
    FamilyResult,
    Inspector,
    LabelledResult,
    attack_cases,
    managed_bundle,
    measure_attacks,
    measure_benign,
    measure_labelled,
    percentile,
)
from failsmall.model.rules import Target

TRANSFORM_SAMPLE = 20_000
REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "crs-regression"
DEFAULT_BENIGN = REPO / "tests" / "data" / "benign"
TARGET_DETECTION = 0.90
TARGET_FALSE_POSITIVES = 0.005
#: Real traffic (blazehttp), at paranoia level 1: the share of legitimate requests blocked, and
#: of attacks detected.
TARGET_REAL_FALSE_POSITIVES = 0.002
TARGET_REAL_DETECTION = 0.80


@dataclass(frozen=True)
class Timing:
    """Inspection time per request, in microseconds."""

    label: str
    requests: int
    median_us: float
    p99_us: float

    @classmethod
    def of(cls, label: str, durations_ns: list[int]) -> Timing:
        return cls(
            label,
            len(durations_ns),
            percentile(durations_ns, 0.5) / 1000,
            percentile(durations_ns, 0.99) / 1000,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--benign", type=Path, default=DEFAULT_BENIGN)
    parser.add_argument(
        "--blazehttp",
        type=Path,
        default=None,
        help="the testcases directory of a chaitin/blazehttp checkout (cases under 00-7f read)",
    )
    parser.add_argument("--paranoia", type=int, nargs="+", default=[1, 2], choices=(1, 2, 3, 4))
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)

    if not args.benign.exists():
        return _bad_input(console, args, f"benign corpus {args.benign} not found")
    try:
        benign = list(benign_requests(args.benign))
        cases = attack_cases(crs_cases(args.corpus)) if args.corpus.is_dir() else []
        real = list(blazehttp_cases(args.blazehttp)) if args.blazehttp is not None else []
    except CorpusError as exc:
        return _bad_input(console, args, str(exc))
    if not cases:
        console.print(
            f"[yellow]CRS regression corpus not found at {args.corpus}: skipping detection "
            "rates (pass --corpus DIR)[/yellow]"
        )
    if args.blazehttp is None:
        console.print(
            "[yellow]no real-traffic corpus: pass --blazehttp DIR, the testcases directory of "
            "a chaitin/blazehttp checkout, for false positives on real traffic[/yellow]"
        )
    documents = []
    all_met = True
    for level in args.paranoia:
        document, met = _run_level(console, args, level, cases, benign, real)
        documents.append(document)
        all_met = all_met and met
    unmeasured = [
        name
        for name, measured in (("CRS detection rates", bool(cases)), ("real traffic", bool(real)))
        if not measured
    ]
    if args.json:
        print(
            json.dumps(
                {"runs": documents, "targets_met": all_met, "unmeasured": unmeasured}, indent=2
            )
        )
    elif not all_met:
        console.print("[red]targets missed[/red]")
    elif unmeasured:
        console.print(
            "[yellow]targets met for what was measured; not measured: "
            + ", ".join(unmeasured)
            + "[/yellow]"
        )
    else:
        console.print("[green]all targets met[/green]")
    return 0 if all_met else 1


def _bad_input(console: Console, args: argparse.Namespace, message: str) -> int:
    if args.json:
        print(json.dumps({"error": message}))
    else:
        console.print(f"[red]{message}[/red]")
    return 2


def _run_level(
    console: Console,
    args: argparse.Namespace,
    level: int,
    cases: list[CorpusCase],
    benign: list[Request],
    real: list[LabelledRequest],
) -> tuple[dict[str, object], bool]:
    """Measure one paranoia level; print its tables unless `--json`. Returns its document."""
    engine = Engine.build(managed_bundle(level))
    baseline = Engine.build(managed_bundle(level, include_managed=False))
    inspector, base = Inspector(engine), Inspector(baseline)
    attack_ns: list[int] = []
    benign_ns: list[int] = []
    base_attack_ns: list[int] = []
    base_benign_ns: list[int] = []
    labelled: LabelledResult | None = None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"PL{level} attack corpus", total=len(cases))
        families = measure_attacks(inspector, cases, attack_ns, lambda: progress.advance(task))
        task = progress.add_task(f"PL{level} benign corpus", total=len(benign))
        false_positives = measure_benign(
            inspector, benign, benign_ns, lambda: progress.advance(task)
        )
        if real:
            task = progress.add_task(f"PL{level} blazehttp", total=len(real))
            labelled = measure_labelled(inspector, real, lambda: progress.advance(task))
        task = progress.add_task(f"PL{level} baseline", total=len(cases) + len(benign))
        measure_attacks(base, cases, base_attack_ns, lambda: progress.advance(task))
        measure_benign(base, benign, base_benign_ns, lambda: progress.advance(task))

    timings = [
        (Timing.of("attack requests", attack_ns), Timing.of("baseline", base_attack_ns)),
        (Timing.of("benign requests", benign_ns), Timing.of("baseline", base_benign_ns)),
    ]
    transforms = _transform_costs(benign)
    met = _targets_met(families, false_positives, bool(cases))
    if labelled is not None and level == 1:
        met = met and _real_targets_met(labelled)
    document = _document(args, level, families, false_positives, timings, met)
    if labelled is not None:
        document["blazehttp"] = _labelled_document(labelled)
    document["transforms_ns_per_value"] = transforms
    if not args.json:
        _print(console, level, families, false_positives, timings, met)
        if labelled is not None:
            _print_labelled(console, level, labelled)
        _print_transforms(console, transforms)
    return document, met


def _real_targets_met(result: LabelledResult) -> bool:
    return (
        result.false_positive_rate <= TARGET_REAL_FALSE_POSITIVES
        and result.detection_rate >= TARGET_REAL_DETECTION
    )


def _labelled_document(result: LabelledResult) -> dict[str, object]:
    return {
        "attacks": result.attacks,
        "detected": result.detected,
        "detection_rate": round(result.detection_rate, 4),
        "legitimate": result.legitimate,
        "blocked": result.blocked,
        "false_positive_rate": round(result.false_positive_rate, 5),
        "errored": result.errored,
        "detected_by_rule": dict(sorted(result.detected_by_rule.items())),
        "blocked_by_rule": dict(sorted(result.blocked_by_rule.items())),
        "detected_by_family": dict(sorted(result.detected_by_family.items())),
        "blocked_by_family": dict(sorted(result.blocked_by_family.items())),
        "missed": result.missed,
        "false_positives": result.false_positives,
        "targets": {
            "detection": TARGET_REAL_DETECTION,
            "false_positives": TARGET_REAL_FALSE_POSITIVES,
        },
    }


def _print_labelled(console: Console, level: int, result: LabelledResult) -> None:
    summary = Table(title=f"blazehttp (real traffic, cases 00-7f) at paranoia level {level}")
    for column in ("", "requests", "blocked", "rate", "target"):
        summary.add_column(column, justify="left" if not column else "right")
    fp_ok = result.false_positive_rate <= TARGET_REAL_FALSE_POSITIVES
    det_ok = result.detection_rate >= TARGET_REAL_DETECTION
    summary.add_row(
        "legitimate blocked",
        str(result.legitimate),
        str(result.blocked),
        f"{result.false_positive_rate:.2%}",
        f"<= {TARGET_REAL_FALSE_POSITIVES:.1%} "
        + ("[green]ok[/green]" if fp_ok else "[red]no[/red]"),
    )
    summary.add_row(
        "attacks detected",
        str(result.attacks),
        str(result.detected),
        f"{result.detection_rate:.2%}",
        f">= {TARGET_REAL_DETECTION:.0%} " + ("[green]ok[/green]" if det_ok else "[red]no[/red]"),
    )
    console.print(summary)
    for title, detected, blocked in (
        ("per family", result.detected_by_family, result.blocked_by_family),
        ("per rule", result.detected_by_rule, result.blocked_by_rule),
    ):
        table = Table(title=f"blazehttp at paranoia level {level}, {title}")
        for column in ("", "attacks detected", "legitimate blocked"):
            table.add_column(column, justify="left" if not column else "right")
        for key in sorted(set(detected) | set(blocked)):
            table.add_row(key, str(detected.get(key, 0)), str(blocked.get(key, 0)))
        console.print(table)


def _transform_costs(requests: list[Request]) -> dict[str, float]:
    """Mean time per value of each transform over the benign corpus' target values.

    The baseline is a call of a function that returns its argument; `features` is the check
    that lets the scanner skip a chain on values none of its transforms would change, for the
    features the managed ruleset's chains use.
    """
    values: list[str] = []
    for request in requests:
        view = RequestView(request)
        for target in Target:
            values.extend(target_values(view, target))
            if len(values) >= TRANSFORM_SAMPLE:
                break
        if len(values) >= TRANSFORM_SAMPLE:
            break
    wanted = 0
    for rule in managed_ruleset().rules:
        if rule.match is not None:
            wanted |= triggers(rule.match.transforms)
    costs: dict[str, float] = {}
    candidates: list[tuple[str, Callable[[str], object]]] = [
        ("baseline (identity call)", _identity),
        ("features (fast-path check)", lambda value: features(value, wanted)),
        *((t.value, fn) for t, fn in TRANSFORMS.items()),
    ]
    for name, fn in candidates:
        started = time.perf_counter_ns()
        for value in values:
            fn(value)
        costs[name] = (time.perf_counter_ns() - started) / max(1, len(values))
    return costs


def _identity(value: str) -> str:
    return value


def _print_transforms(console: Console, costs: dict[str, float]) -> None:
    baseline = costs["baseline (identity call)"]
    table = Table(title="transforms: mean time per target value of the benign corpus")
    table.add_column("transform")
    table.add_column("ns / value", justify="right")
    table.add_column("/ baseline", justify="right")
    for name, cost in costs.items():
        table.add_row(name, f"{cost:.0f}", f"{_ratio(cost, baseline):.1f}x")
    console.print(table)


def _targets_met(
    families: dict[str, FamilyResult], benign: BenignResult, have_corpus: bool
) -> bool:
    detection = not have_corpus or all(
        f.rate >= TARGET_DETECTION for f in families.values() if f.tests
    )
    return detection and benign.rate <= TARGET_FALSE_POSITIVES


def _document(
    args: argparse.Namespace,
    level: int,
    families: dict[str, FamilyResult],
    benign: BenignResult,
    timings: list[tuple[Timing, Timing]],
    met: bool,
) -> dict[str, object]:
    return {
        "paranoia_level": level,
        "corpus": str(args.corpus),
        "families": [
            {
                "family": f.family,
                "name": f.name,
                "tests": f.tests,
                "blocked": f.blocked,
                "rate": round(f.rate, 4),
                "errored": f.errored,
                "missed": f.missed,
            }
            for f in families.values()
        ],
        "benign": {
            "requests": benign.requests,
            "blocked": benign.blocked,
            "rate": round(benign.rate, 5),
            "errored": benign.errored,
            "blocked_by_rule": benign.blocked_by_rule,
        },
        "timing_us": [
            {
                "requests": t.label,
                "count": t.requests,
                "median": round(t.median_us, 1),
                "p99": round(t.p99_us, 1),
                "baseline_median": round(b.median_us, 1),
                "baseline_p99": round(b.p99_us, 1),
                "median_ratio": round(_ratio(t.median_us, b.median_us), 2),
            }
            for t, b in timings
        ],
        "targets": {"detection": TARGET_DETECTION, "false_positives": TARGET_FALSE_POSITIVES},
        "targets_met": met,
    }


def _print(
    console: Console,
    level: int,
    families: dict[str, FamilyResult],
    benign: BenignResult,
    timings: list[tuple[Timing, Timing]],
    met: bool,
) -> None:
    table = Table(title=f"failsmall-managed at paranoia level {level}: CRS PL1 attacks")
    for column in (
        "family",
        "",
        "PL1 tests with expect_ids",
        "blocked",
        "rate",
        "errored",
        "target",
    ):
        table.add_column(column, justify="left" if column in ("family", "") else "right")
    for f in families.values():
        if not f.tests:
            continue
        ok = f.rate >= TARGET_DETECTION
        table.add_row(
            f.family,
            f.name,
            str(f.tests),
            str(f.blocked),
            f"{f.rate:.1%}",
            str(f.errored),
            "[green]ok[/green]" if ok else "[red]below 90%[/red]",
        )
    console.print(table)

    fp = Table(title="benign corpus")
    for column in ("requests", "blocked", "false-positive rate", "errored", "target", "rules"):
        fp.add_column(column, justify="right" if column != "rules" else "left")
    fp.add_row(
        str(benign.requests),
        str(benign.blocked),
        f"{benign.rate:.2%}",
        str(benign.errored),
        "[green]ok[/green]" if benign.rate <= TARGET_FALSE_POSITIVES else "[red]above 0.5%[/red]",
        ", ".join(f"{rule} x{n}" for rule, n in sorted(benign.blocked_by_rule.items())) or "-",
    )
    console.print(fp)

    timing = Table(title="inspection time per request (engine.evaluate), microseconds")
    for column in ("requests", "count", "median", "p99", "baseline median", "baseline p99"):
        timing.add_column(column, justify="right" if column != "requests" else "left")
    timing.add_column("median / baseline", justify="right")
    for t, b in timings:
        timing.add_row(
            t.label,
            str(t.requests),
            f"{t.median_us:.0f}",
            f"{t.p99_us:.0f}",
            f"{b.median_us:.0f}",
            f"{b.p99_us:.0f}",
            f"{_ratio(t.median_us, b.median_us):.1f}x",
        )
    console.print(timing)
    console.print(
        "baseline: the same pipeline with an empty managed phase (no signatures); errored: a "
        "module failed and its failure policy decided",
        style="dim",
    )
    console.print(
        f"paranoia level {level}: " + ("[green]met[/green]" if met else "[red]missed[/red]")
    )


def _ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else 0.0


if __name__ == "__main__":
    sys.exit(main())
