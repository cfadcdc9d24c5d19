"""Feature keys, the node's report of present features, ingest labels, the guards and the CLI."""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from failsmall.build import generate_keypair
from failsmall.cli.main import app
from failsmall.cli.up_cmd import failsmall_argv
from failsmall.engine.bot import BotScorer
from failsmall.engine.outcomes import Scored
from failsmall.engine.request import Request, RequestView
from failsmall.features.generate import generate_feature_file
from failsmall.features.guards import Acceptance, GuardRefused, check
from failsmall.features.ingest import ingest_access_log, ingest_generated
from failsmall.features.metadata import SchemaError, feature_columns
from failsmall.features.source import ColumnInfo, SourceError, open_source
from failsmall.features.sqlite import SqliteSource
from failsmall.features.traffic import CANDIDATE_KEYS, candidate_features, generate, table_rows
from failsmall.model.bot import BotConfig, FeatureFile, FeatureKind, feature_from_key, feature_key
from failsmall.model.traffic import Capacities
from failsmall.node.access_log import AccessEntry
from failsmall.transport.natsd import free_port

from .fleet import running_fleet

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site" / "features.yaml"
TABLE = "http_requests_features"
CANDIDATES = list(CANDIDATE_KEYS[:6])


def _example() -> FeatureFile:
    return FeatureFile.model_validate(yaml.safe_load(EXAMPLE.read_text()))


@given(
    st.sampled_from(list(FeatureKind)),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
)
def test_a_key_names_its_feature(kind: FeatureKind, header: str) -> None:
    param = {FeatureKind.RATE_OVER: "12.5", FeatureKind.ACCEPT_WILDCARD: ""}.get(kind, header)
    feature = feature_from_key(feature_key(kind, param))
    assert (feature.kind, feature.key) == (kind, feature_key(kind, param))


@pytest.mark.parametrize("key", ["nope:x", "order:", "hdr:", "rate:fast", "UA:curl"])
def test_a_bad_key_says_why(key: str) -> None:
    with pytest.raises(ValueError, match=r"feature key|needs"):
        feature_from_key(key)


def test_a_scored_request_reports_its_present_features_in_the_access_log() -> None:
    scorer = BotScorer.load(BotConfig(feature_file=_example()), Capacities())
    request = Request(
        "GET", "/", headers=(("Host", "a"), ("User-Agent", "curl/8"), ("Accept", "*/*"))
    )
    outcome = scorer.score(RequestView(request), 50.0)
    assert isinstance(outcome, Scored)
    assert set(outcome.features) == {
        "ua:curl",
        "nohdr:accept-language",
        "accept-any",
        "order:host,user-agent,accept",
        "rate:20",
    }
    assert outcome.score == 1  # 60 - 35 - 8 - 5 + 4 - 20, clamped
    slow = scorer.score(RequestView(request), 1.0)
    assert isinstance(slow, Scored) and slow.score == 60 - 35 - 8 - 5 + 4
    assert scorer.score(RequestView(request), 50.0) is outcome  # one outcome per feature set
    line = AccessEntry(
        "10.0.0.1", 200, "allow", 1.0, bot=outcome.score, bot_features=outcome.features
    ).to_line(0)
    assert json.loads(line)["bf"] == list(outcome.features)


def test_ingest_labels_from_the_generator_ids_and_signature_rules(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    entries = [
        {"id": "gen-bot-curl-1", "bot": 10, "bf": ["ua:curl"]},
        {"id": "gen-human-browser-2", "bot": 80, "bf": ["ua:browser", "hdr:accept-language"]},
        {"id": "x-3", "bot": 40, "bf": ["ua:other"], "rules": ["fsm-sqli-001"]},
        {"id": "x-4", "bot": 70, "bf": ["ua:browser"]},
        {"id": "x-5", "status": 429},
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    source = open_source(f"sqlite:{tmp_path / 'a.db'}")
    result = ingest_access_log(source, TABLE, log, _example().features)
    assert (result.rows, result.bots, result.humans) == (3, 2, 1)
    assert (result.unlabelled, result.unscored) == (1, 1)
    assert result.labelled_by == {
        "generator:curl": 1,
        "generator:browser": 1,
        "signature:fsm-sqli-001": 1,
    }
    assert "ua:other" in result.columns and "ua:python" in result.columns


def test_a_column_that_is_not_a_feature_key_is_a_schema_error(tmp_path: Path) -> None:
    source = open_source(f"sqlite:{tmp_path / 'a.db'}")
    ingest_generated(source, TABLE, generate(200, seed=1), candidate_features())
    assert isinstance(source, SqliteSource)
    source.connection.execute(f'ALTER TABLE "{TABLE}" ADD COLUMN "country" TEXT')
    with pytest.raises(SchemaError) as error:
        generate_feature_file(source, TABLE)
    assert any("country" in p for p in error.value.problems)


def test_guards_refuse_non_finite_weights_and_accept_a_delta_with_a_reason() -> None:
    data = {
        "version": "v",
        "features": [
            {"name": "ua:curl", "kind": "user_agent_class", "param": "curl", "weight": math.nan}
        ],
    }
    with pytest.raises(GuardRefused, match="weight nan"):
        check(data, capacity=200, previous=None)
    previous = _example()
    small = {
        "version": "s",
        "features": [
            {"name": "ua:curl", "kind": "user_agent_class", "param": "curl", "weight": -40}
        ],
    }
    with pytest.raises(GuardRefused, match="delta"):
        check(small, capacity=200, previous=previous)
    accepted = Acceptance("ops", "retiring the old features")
    parsed, report = check(small, capacity=200, previous=previous, accepted=accepted)
    assert parsed.slots == 1 and report.accepted == accepted


def test_the_cli_generates_a_file_a_node_loads(tmp_path: Path) -> None:
    runner = CliRunner()
    db = f"sqlite:{tmp_path / 'a.db'}"
    result = runner.invoke(
        app, ["features", "ingest", "--source", db, "--generate", "3000", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "features.yaml"
    result = runner.invoke(
        app,
        [
            "features",
            "generate",
            "--source",
            db,
            "--out",
            str(out),
            "--compare",
            str(EXAMPLE),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["quality"]["recall"] >= report["compared"]["recall"]
    loaded = FeatureFile.model_validate(yaml.safe_load(out.read_text()))
    BotScorer.load(BotConfig(feature_file=loaded), Capacities())
    result = runner.invoke(
        app, ["features", "generate", "--source", "nope:x", "--out", str(out), "--json"]
    )
    assert result.exit_code == 2 and "unknown source" in json.loads(result.output)["error"]


@given(
    st.lists(
        st.tuples(st.sampled_from(["default", "r0", "r1"]), st.sampled_from(CANDIDATES)),
        unique=True,
    )
)
def test_dedupe_keeps_each_name_once_and_lists_every_duplicate(
    rows: list[tuple[str, str]],
) -> None:
    columns = feature_columns([ColumnInfo(db, name, "UInt8") for db, name in rows])
    names = [name for _, name in rows]
    assert columns.keys == tuple(sorted(set(names)))
    assert set(columns.duplicates) == {n for n in names if names.count(n) > 1}
    for name, databases in columns.duplicates.items():
        assert sorted(databases) == sorted(db for db, n in rows if n == name)
        assert name in columns.warning()


def test_every_cycle_that_cannot_generate_is_reported_and_the_next_one_tries_again(
    tmp_path: Path,
) -> None:
    generate_keypair(tmp_path / "k.pem")
    result = CliRunner().invoke(
        app,
        [
            "features",
            "publish",
            str(tmp_path / "f.yaml"),
            "--key",
            str(tmp_path / "k.pem"),
            "--config",
            str(EXAMPLE.parent),
            "--state",
            str(tmp_path / "state"),
            "--every",
            "0s",
            "--times",
            "3",
            "--source",
            f"sqlite:{tmp_path / 'empty.db'}",
            "--json",
        ],
    )
    assert result.exit_code == 1
    decoder, at, documents = json.JSONDecoder(), 0, []
    text = result.output
    while text[at:].strip():
        document, end = decoder.raw_decode(text[at:].lstrip())
        documents.append(document)
        at = len(text) - len(text[at:].lstrip()) + end
    assert [d["outcome"] for d in documents] == ["failed"] * 3
    assert "no such table" in documents[0]["error"]
    assert not (tmp_path / "state" / "last-published.yaml").exists()


def test_sqlite_counts_per_combination_match_the_rows_also_past_one_packed_word(
    tmp_path: Path,
) -> None:
    keys = (*CANDIDATE_KEYS, *(f"hdr:x-signal-{i:03}" for i in range(60)))
    source = open_source(f"sqlite:{tmp_path / 'a.db'}")
    assert isinstance(source, SqliteSource)
    traffic = list(generate(1500, seed=3))
    features = candidate_features(keys)
    rows = list(table_rows(iter(traffic), features))
    # A few rows with the signals past the 62nd column set, so every word is exercised.
    rows += [(*(int(i % 7 == 0) for i in range(len(keys))), 1, "t") for _ in range(5)]
    source.ensure_table(TABLE, keys)
    source.insert(TABLE, keys, rows)
    counts = source.label_counts(TABLE, keys)
    expected: dict[tuple[int, ...], list[int]] = {}
    for row in rows:
        pattern, label = tuple(int(v) for v in row[: len(keys)]), int(row[-2])
        expected.setdefault(pattern, [0, 0])[label] += 1
    found = {
        tuple(int(v) for v in p): [int(h), int(b)]
        for p, b, h in zip(counts.patterns, counts.bots, counts.humans, strict=True)
    }
    assert found == expected


def test_a_sqlite_url_attaches_databases_whose_copies_only_the_unfiltered_query_sees(
    tmp_path: Path,
) -> None:
    for name in ("main.db", "r0.db"):
        source = open_source(f"sqlite:{tmp_path / name}")
        ingest_generated(source, TABLE, generate(50, seed=1), candidate_features())
        source.close()
    source = open_source(f"sqlite:{tmp_path / 'main.db'}?attach=r0:{tmp_path / 'r0.db'}")
    filtered = source.columns(TABLE)
    unfiltered = source.columns(TABLE, database_filter=False)
    assert {c.database for c in filtered} == {"main"}
    assert {c.database for c in unfiltered} == {"main", "r0"}
    assert len(unfiltered) == 2 * len(filtered)
    with pytest.raises(SourceError, match="unknown option"):
        open_source(f"sqlite:{tmp_path / 'main.db'}?attch=r0:x")


def _refusable_state(tmp_path: Path) -> tuple[Path, Path]:
    """A state directory that last published the example file, and a file of one feature the
    delta guard refuses against it."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "last-published.yaml").write_text(EXAMPLE.read_text())
    small = tmp_path / "small.yaml"
    small.write_text(
        "version: small\nfeatures:\n"
        "  - {name: ua:curl, kind: user_agent_class, param: curl, weight: -40}\n"
    )
    return state, small


async def _failsmall(*args: str, token: str, control: str, home: Path) -> tuple[int, str, str]:
    """Run `failsmall ARGS` as its own process (the control plane serves in this one)."""
    env = {**os.environ, "COLUMNS": "200", "FAILSMALL_HOME": str(home)}
    env |= {"FAILSMALL_CONTROL": control, "FAILSMALL_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        *failsmall_argv(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_refused_file_changes_nothing_and_the_control_plane_audit_says_why(
    tmp_path: Path,
) -> None:
    generate_keypair(tmp_path / "k.pem")
    state, small = _refusable_state(tmp_path)
    args = ["features", "publish", str(small), "--key", str(tmp_path / "k.pem")]
    args += ["--config", str(EXAMPLE.parent), "--state", str(state)]
    async with running_fleet(tmp_path, Ed25519PrivateKey.generate()) as fleet:
        operator = await fleet.token("operator", "olga")
        viewer = await fleet.token("viewer", "vic")
        run = {"control": fleet.plane.url, "home": tmp_path / "home"}
        code, out, err = await _failsmall(*args, "--json", token=operator, **run)
        assert code == 1, f"{out}\n{err}"
        refusal = json.loads(out)
        assert refusal["problems"][0].startswith("delta: feature count changes by 93%")
        assert "failsmall audit" in refusal["hint"]
        assert (state / "last-published.yaml").read_text() == EXAMPLE.read_text()
        assert not (state / "audit.db").exists()

        code, out, _ = await _failsmall("audit", "--json", token=viewer, **run)
        assert code == 0
        (entry,) = [e for e in json.loads(out) if e["action"].startswith("features_")]
        assert (entry["actor"], entry["action"]) == ("olga", "features_refused")
        assert entry["details"]["problems"] == refusal["problems"]
        assert refusal["problems"][0] in entry["reason"]
        code, out, _ = await _failsmall("audit", token=viewer, **run)
        assert code == 0 and "features_refused" in out and "olga" in out
        assert "delta: feature count changes by 93%" in out

        # A viewer may not record the decision: the refusal still stands and the CLI says
        # that it is not in the audit log.
        code, out, err = await _failsmall(*args, "--json", token=viewer, **run)
        assert code == 1, f"{out}\n{err}"
        unrecorded = json.loads(out)
        assert "not recorded in the audit log" in unrecorded["error"]
        assert "403" in unrecorded["error"]
        assert unrecorded["problems"] == refusal["problems"]
        code, out, _ = await _failsmall("audit", "--json", token=viewer, **run)
        assert [e["actor"] for e in json.loads(out) if e["action"] == "features_refused"] == [
            "olga"
        ]

        # A hostile file: hundreds of problems naming features with escapes and long names.
        # Its refusal is recorded, printable and bounded.
        hostile = tmp_path / "hostile.yaml"
        name = "\x1b]0;owned\x07" + "x" * 5000
        features = [
            {"name": f"{name}{i}", "kind": "user_agent_class", "param": "curl", "weight": math.nan}
            for i in range(400)
        ]
        hostile.write_text(yaml.safe_dump({"version": "h\x1b[2J", "features": features}))
        hostile_args = [*args[:2], str(hostile), *args[3:]]
        code, out, err = await _failsmall(*hostile_args, "--json", token=operator, **run)
        assert code == 1, f"{out}\n{err}"
        assert len(json.loads(out)["problems"]) == 402  # capacity, delta, 400 weights
        code, out, _ = await _failsmall("audit", "--json", token=viewer, **run)
        last = json.loads(out)[-1]
        assert (last["actor"], last["action"]) == ("olga", "features_refused")
        problems = last["details"]["problems"]
        assert len(problems) == 11 and problems[-1] == "... and 392 more"
        assert all(len(p) <= 300 for p in problems) and len(last["reason"]) <= 1000
        assert "\x1b" not in out and "\\x1b" in last["reason"]
        code, out, _ = await _failsmall("audit", token=viewer, **run)
        assert code == 0 and "\x1b" not in out and "\x07" not in out

        code, out, _ = await _failsmall("audit", "verify", "--json", token=viewer, **run)
        assert code == 0 and json.loads(out)["intact"] is True


def test_a_refusal_the_control_plane_cannot_record_says_so(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k.pem")
    state, small = _refusable_state(tmp_path)
    args = ["features", "publish", str(small), "--key", str(tmp_path / "k.pem")]
    args += ["--config", str(EXAMPLE.parent), "--state", str(state), "--json"]
    args += ["--control", f"http://127.0.0.1:{free_port()}", "--token", "fs_x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    refusal = json.loads(result.output)
    assert "cannot reach the control plane" in refusal["error"]
    assert refusal["problems"][0].startswith("delta: feature count changes by 93%")
    assert (state / "last-published.yaml").read_text() == EXAMPLE.read_text()
