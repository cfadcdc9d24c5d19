"""The worker bench's reading of its rounds: medians per cell and per worker, failed rows."""

from __future__ import annotations

from tests.bench.scripts import load_bench

workers = load_bench("workers")
GET = workers.COLUMNS[0]


def cell(rps: float, quota_used: list[float], errors: int = 0, wrk: float = 0.5) -> object:
    return workers.Cell(
        rps=rps,
        p50_ms=1.0,
        p99_ms=2.0,
        errors=errors,
        cpu_us=1e6 * 0.4 * len(quota_used) / rps,
        quota_used=quota_used,
        throttled=[0.5] * len(quota_used),
        wrk_cores=wrk,
        origin_cores=0.3,
        limiter=workers.limiter(quota_used, wrk, 0.3),
    )


def row(count: int, *cells: object, failed: str = "") -> object:
    if failed:
        return workers.Row("managed", count, workers.bench.Outcome.FAILED, failed)
    return workers.Row("managed", count, workers.bench.Outcome.MEASURED, cells={GET: cells[0]})


def test_each_figure_is_its_median_over_the_rounds_and_the_ratio_that_of_the_medians() -> None:
    rounds = [
        [row(1, cell(1_000, [1.0])), row(2, cell(3_000, [1.0, 0.5], errors=1))],
        [row(1, cell(3_000, [0.99])), row(2, cell(3_600, [0.98, 1.0], wrk=0.9))],
        [row(1, cell(2_000, [0.7])), row(2, cell(2_500, [1.01, 0.97], errors=2))],
    ]
    for one in rounds:
        workers.add_ratios(one)
    assert [one[1].cells[GET].ratio for one in rounds] == [3.0, 1.2, 1.25]

    one, two = workers.combine(rounds)
    assert one.cells[GET].rps == 2_000 and two.cells[GET].rps == 3_000
    assert two.cells[GET].ratio == 1.5  # 3,000 ÷ 2,000, not the median of the rounds' ratios
    assert two.cells[GET].errors == 3
    assert two.cells[GET].quota_used == [1.0, 0.97]  # each worker's own median
    assert one.cells[GET].quota_used == [0.99]
    # read from the medians: every worker near its quota, although one round had a worker at half
    assert two.cells[GET].limiter is workers.Limiter.WORKERS
    assert two.cells[GET].wrk_cores == 0.5


def test_a_row_failed_in_any_round_is_failed_with_that_round_s_reason() -> None:
    rounds = [
        [row(1, cell(1_000, [1.0])), row(2, cell(1_900, [1.0, 1.0]))],
        [row(1, cell(1_100, [1.0])), row(2, failed="a worker was restarted")],
    ]
    one, two = workers.combine(rounds)
    assert one.outcome is workers.bench.Outcome.MEASURED
    assert two.outcome is workers.bench.Outcome.FAILED
    assert two.reason == "a worker was restarted" and two.cells == {}
