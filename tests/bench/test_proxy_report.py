"""The proxy bench's reading of its figures (targets, ratios) and its ModSecurity configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.scripts import load_bench

REPO = Path(__file__).resolve().parents[2]


proxy = load_bench("proxy")


def measured(name: str, rps: float, reference: float | None = None) -> object:
    """A row measured at `rps` in every column, each cell paired with keep-alive nginx
    measured at `reference` just before it (unpaired without one)."""
    cells = {
        c: proxy.paired(
            proxy.Cell(rps=rps, p50_ms=1.0, p99_ms=2.0, errors=0),
            None if reference is None else proxy.Cell(reference, 1.0, 2.0, 0),
        )
        for c in proxy.Column
    }
    return proxy.Row(name, proxy.Outcome.MEASURED, cells=cells)


def verdicts(rows: list[object]) -> dict[tuple[str, str], tuple[float | None, str]]:
    return {(g.label, g.column.value): (g.ratio, g.verdict.value) for g in proxy.goal_results(rows)}


def test_targets_are_ratios_to_their_baselines_in_every_column_they_name() -> None:
    rows = [
        measured(proxy.KEEPALIVE, 10_000),
        measured(proxy.STOCK, 4_000),
        measured(proxy.EMPTY, 8_000),
        measured(proxy.MANAGED, 3_000),
        measured(proxy.MODSEC, 100),
    ]
    proxy.add_ratios(rows)
    found = verdicts(rows)
    assert found[("empty bundle ≥ 0.8× keep-alive nginx", "json_distinct")] == (0.8, "met")
    managed_get = found[("managed, distinct GETs ≥ 0.5× keep-alive nginx", "get_distinct")]
    assert managed_get == (0.3, "not met")
    assert found[("managed ≥ 30× nginx + ModSecurity + CRS PL1", "get")] == (30.0, "met")
    assert len(found) == 4 + 1 + 1 + 4  # the every-column targets once per column
    empty = rows[2]
    assert empty.cells[proxy.Column.GET].ratio_stock == 2.0  # type: ignore[attr-defined]


def test_a_skipped_or_failed_baseline_leaves_its_targets_unmeasured() -> None:
    rows = [
        measured(proxy.KEEPALIVE, 10_000),
        measured(proxy.MANAGED, 3_000),
        proxy.Row(proxy.MODSEC, proxy.Outcome.SKIPPED, "not installed"),
        proxy.Row(proxy.EMPTY, proxy.Outcome.FAILED, "did not start"),
    ]
    proxy.add_ratios(rows)
    found = verdicts(rows)
    assert found[("managed ≥ 30× nginx + ModSecurity + CRS PL1", "json")] == (None, "unmeasured")
    assert found[("empty bundle ≥ 0.8× keep-alive nginx", "get")] == (None, "unmeasured")
    assert f"| {proxy.EMPTY} | failed |" in proxy.markdown(rows, "conditions", (1.0, 2.0))


def test_unpaired_rows_are_compared_by_their_req_per_s() -> None:
    rows = [measured(proxy.KEEPALIVE, 10_000), measured(proxy.MANAGED, 3_000)]
    proxy.add_ratios(rows)
    found = verdicts(rows)
    assert found[("managed, distinct GETs ≥ 0.5× keep-alive nginx", "get_distinct")] == (
        0.3,
        "not met",
    )


def test_a_paired_ratio_is_to_the_reference_measured_beside_it() -> None:
    """A slow phase that slows both the managed node and the nginx measured just before it
    moves the paired ratio not at all; the req/s it moves."""
    rounds = [
        [measured(proxy.KEEPALIVE, 10_000, 10_000), measured(proxy.MANAGED, 3_000, 10_000)],
        [measured(proxy.KEEPALIVE, 10_000, 10_000), measured(proxy.MANAGED, 1_800, 6_000)],
        [measured(proxy.KEEPALIVE, 10_000, 10_000), measured(proxy.MANAGED, 2_700, 9_000)],
        [measured(proxy.KEEPALIVE, 10_000, 10_000), measured(proxy.MANAGED, 2_400, 8_000)],
        [measured(proxy.KEEPALIVE, 10_000, 10_000), measured(proxy.MANAGED, 3_300, 11_000)],
    ]
    rounds[1][0].cells[proxy.Column.GET].errors = 2  # type: ignore[attr-defined]
    keepalive, managed = proxy.combine(rounds)
    assert keepalive.cells[proxy.Column.GET].errors == 2  # errors of every round count
    assert managed.cells[proxy.Column.JSON].rps == 2_700  # the median req/s
    assert managed.cells[proxy.Column.JSON].reference_rps == 9_000
    assert managed.cells[proxy.Column.JSON].ratio_keepalive == pytest.approx(0.3)
    found = verdicts([keepalive, managed])
    ratio, verdict = found[("managed, distinct GETs ≥ 0.5× keep-alive nginx", "get_distinct")]
    assert (ratio, verdict) == (pytest.approx(0.3), "not met")


def test_ratios_between_two_paired_rows_are_the_quotients_of_their_paired_ratios() -> None:
    rows = [
        measured(proxy.KEEPALIVE, 10_000, 10_000),
        measured(proxy.MANAGED, 2_000, 8_000),
        measured(proxy.MODSEC, 50, 10_000),
    ]
    found = verdicts(rows)
    assert found[("managed ≥ 30× nginx + ModSecurity + CRS PL1", "get")] == (
        pytest.approx(50.0),
        "met",
    )


def test_a_row_failed_in_any_round_is_failed() -> None:
    rounds = [
        [measured(proxy.KEEPALIVE, 10_000), measured(proxy.EMPTY, 9_000)],
        [
            measured(proxy.KEEPALIVE, 10_000),
            proxy.Row(proxy.EMPTY, proxy.Outcome.FAILED, "crashed"),
        ],
    ]
    keepalive, empty = proxy.combine(rounds)
    assert keepalive.outcome is proxy.Outcome.MEASURED
    assert (empty.outcome, empty.reason) == (proxy.Outcome.FAILED, "crashed")


def test_modsecurity_configuration_blocks_and_loads_the_crs(tmp_path: Path) -> None:
    missing = proxy.modsecurity_missing()
    if shutil.which("nginx") is None or missing:
        pytest.skip(missing or "nginx not found; apt-get install -y nginx")
    rules = proxy.modsecurity_rules(tmp_path)
    settings = (tmp_path / "modsecurity" / "modsecurity.conf").read_text()
    assert "\nSecRuleEngine On\n" in settings
    assert "\nSecRequestBodyAccess On\n" in settings
    assert "setvar:tx.paranoia_level=1" in rules.read_text()
    command = proxy.nginx_conf(
        tmp_path,
        "check",
        proxy.free_port(),
        proxy.KEEPALIVE_LOCATION,
        proxy.keepalive_upstream(proxy.free_port())
        + f"\nmodsecurity on;\nmodsecurity_rules_file {rules};",
        f"load_module {proxy.MODSEC_MODULE};",
    )
    done = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "rules loaded inline/local/remote: 0/" in done.stderr


def test_a_proxy_that_does_not_start_fails_its_row_with_its_output(tmp_path: Path) -> None:
    crash = "import sys; print('cannot bind: address in use'); sys.exit(3)"
    contender = proxy.Contender("broken", [sys.executable, "-c", crash], proxy.free_port())
    with pytest.raises(proxy.BenchError) as failed:
        proxy.measure_contender(contender, tmp_path, None, 1, False, 4, lambda _: None)
    assert "exited with status 3 before serving" in str(failed.value)
    assert "cannot bind: address in use" in str(failed.value)


def test_without_nginx_its_rows_are_skipped_saying_what_to_install(tmp_path: Path) -> None:
    rows = proxy.plan(tmp_path, proxy.free_port(), have_nginx=False)
    skipped = {r.name: r.reason for r in rows if isinstance(r, proxy.Unavailable)}
    assert set(skipped) == {proxy.STOCK, proxy.KEEPALIVE, proxy.MODSEC}
    assert "apt-get install -y nginx libnginx-mod-http-modsecurity" in skipped[proxy.MODSEC]
    names = [r.name for r in rows]
    assert names == [
        proxy.STOCK,
        proxy.KEEPALIVE,
        proxy.NAIVE,
        proxy.FORWARDER,
        proxy.EMPTY,
        proxy.MANAGED,
        proxy.EXAMPLE_SITE,
        proxy.MODSEC,
        proxy.WORKERS2,
    ]
