"""`failsmall node`: run an edge node (a supervisor and its worker processes)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from failsmall.cli.output import Exit, fail
from failsmall.model import Capacities
from failsmall.node.config import NodeConfig, NodeConfigError, load_trusted_keys
from failsmall.node.guard import DEFAULT_WINDOW_S
from failsmall.node.supervisor import Supervisor


def node(
    node_id: Annotated[str, typer.Option("--node-id", help="This node's id in reports.")],
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Where the LKG bundles and markers live.")
    ],
    trust: Annotated[
        list[Path], typer.Option("--trust", help="Public key (PEM) bundles must be signed with.")
    ],
    listen: Annotated[str, typer.Option("--listen", help="Proxy address.")] = "127.0.0.1:8080",
    admin: Annotated[
        str, typer.Option("--admin", help="Admin address (worker i uses port + i).")
    ] = "127.0.0.1:9080",
    watch_dir: Annotated[
        Path | None, typer.Option("--watch-dir", help="Directory with assignment.json.")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="A signed bundle file to serve and watch.")
    ] = None,
    control: Annotated[
        str,
        typer.Option(
            "--control",
            help="Control plane URL (http://, node token in $FAILSMALL_NODE_TOKEN) or NATS servers (nats://a,nats://b).",
        ),
    ] = "",
    jetstream_domain: Annotated[
        str,
        typer.Option(
            "--jetstream-domain",
            help="The control plane's JetStream domain, if --control names leaf nodes.",
        ),
    ] = "",
    access_log: Annotated[
        str,
        typer.Option(
            "--access-log", help="Append a JSON line per request to this file (-: stdout)."
        ),
    ] = "",
    workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
    report_interval: Annotated[
        float, typer.Option("--report-interval", help="Seconds between health reports.")
    ] = 1.0,
    crash_window: Annotated[
        float,
        typer.Option(
            "--crash-window",
            help="A death this soon after an apply counts against that bundle (quarantined on "
            "a recorded fault, or after 3 such deaths).",
        ),
    ] = DEFAULT_WINDOW_S,
    bot_feature_slots: Annotated[int, typer.Option("--bot-feature-slots")] = 200,
    max_rules: Annotated[int, typer.Option("--max-rules")] = 10_000,
) -> None:
    """Run an edge node: reverse proxy, WAF engine and config agent, under a supervisor."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = NodeConfig(
        node_id=node_id,
        state_dir=state_dir,
        trust=trust,
        listen=listen,
        admin=admin,
        watch_dir=watch_dir,
        bundle_file=bundle,
        control=control,
        jetstream_domain=jetstream_domain,
        access_log=access_log,
        capacities=Capacities(bot_feature_slots=bot_feature_slots, max_rules=max_rules),
        report_interval_s=report_interval,
        crash_window_s=crash_window,
    )
    try:
        config.validate()
        load_trusted_keys(trust)
    except NodeConfigError as exc:
        fail(str(exc), "see `failsmall node --help`", Exit.BAD_INPUT)
    if workers > 1 and config.listen.endswith(":0"):
        fail("--workers > 1 needs a fixed --listen port", "e.g. --listen 127.0.0.1:8080")
    raise typer.Exit(Supervisor(config, workers).run())


def register(app: typer.Typer) -> None:
    app.command()(node)
