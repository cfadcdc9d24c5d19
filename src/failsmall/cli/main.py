"""The `failsmall` command: one module per command group, registered here."""

import typer

from failsmall.cli import output

app = typer.Typer(
    name="failsmall",
    help="failsmall: an edge platform that fails small.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _each_run() -> None:
    """failsmall: an edge platform that fails small."""
    output.start_command()


# Command registrations: one line per command module.
from failsmall.cli import build_cmd  # noqa: E402

build_cmd.register(app)
from failsmall.cli import node_cmd  # noqa: E402

node_cmd.register(app)
from failsmall.cli import sim_cmd  # noqa: E402

sim_cmd.register(app)
from failsmall.cli import control_cmd  # noqa: E402

control_cmd.register(app)
from failsmall.cli import push_cmd  # noqa: E402

push_cmd.register(app)
from failsmall.cli import status_cmd  # noqa: E402

status_cmd.register(app)
from failsmall.cli import rollout_cmd  # noqa: E402

rollout_cmd.register(app)
from failsmall.cli import killswitch_cmd  # noqa: E402

killswitch_cmd.register(app)
from failsmall.cli import audit_cmd  # noqa: E402

audit_cmd.register(app)
from failsmall.cli import up_cmd  # noqa: E402

up_cmd.register(app)
from failsmall.cli import expr_cmd  # noqa: E402

expr_cmd.register(app)
from failsmall.cli import features_cmd  # noqa: E402

features_cmd.register(app)
from failsmall.cli import tune_cmd  # noqa: E402

tune_cmd.register(app)
from failsmall.cli import drill_cmd  # noqa: E402

drill_cmd.register(app)
