"""The `failsmall` command: one module per command group, registered here."""

import typer

app = typer.Typer(
    name="failsmall",
    help="failsmall: an edge platform that fails small.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Command registrations: one line per command module.
from failsmall.cli import build_cmd  # noqa: E402

build_cmd.register(app)
from failsmall.cli import node_cmd  # noqa: E402

node_cmd.register(app)
